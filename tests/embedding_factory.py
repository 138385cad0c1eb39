"""A random-weight Qwen3-Embedding-style folder: a qwen3 decoder body saved the way
sentence-transformers saves it (no LM head, keys without ``model.``), with
``modules.json``, ``1_Pooling/config.json`` (last-token pooling) and a tokenizer
that appends ``<|endoftext|>`` to every input, as Qwen3-Embedding's does."""

from __future__ import annotations

import json
from pathlib import Path

from model_factory import build_random_model


def build_embedding_model(out: Path, *, hidden: int = 64, max_len: int = 2048) -> Path:
    import mlx.core as mx
    from tokenizers import Tokenizer, processors

    build_random_model(out, arch="qwen3", hidden=hidden, max_len=max_len, seed=1)
    weights = mx.load(str(out / "model.safetensors"))
    body = {k.removeprefix("model."): v for k, v in weights.items() if not k.startswith("lm_head.")}
    mx.save_safetensors(str(out / "model.safetensors"), body, metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    config.update(architectures=["Qwen3ForCausalLM"], tie_word_embeddings=True)
    (out / "config.json").write_text(json.dumps(config, indent=1))

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1",
                                                       special_tokens=[("<|endoftext|>", eot)])
    tok.save(str(out / "tokenizer.json"))

    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=1))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": True, "include_prompt": True}))
    (out / "2_Normalize").mkdir(exist_ok=True)
    return out


def reference_embedding(folder: Path, ids: list[int], pooling: str = "last") -> list[float]:
    """Pooling computed here, independently of the server: the whole input in one
    pass through mlx-lm's qwen3 body, pooled, then L2-normalized."""
    import mlx.core as mx
    from mlx_lm.utils import _get_classes

    config = json.loads((folder / "config.json").read_text())
    model_cls, args_cls = _get_classes(config)
    model = model_cls(args_cls.from_dict(config))
    model.load_weights([(f"model.{k}", v) for k, v in mx.load(str(folder / "model.safetensors")).items()],
                       strict=False)
    hidden = model.model(mx.array([ids]))[0].astype(mx.float32)
    h = {"last": hidden[-1], "cls": hidden[0], "mean": hidden.mean(axis=0)}[pooling]
    return (h / mx.linalg.norm(h)).tolist()
