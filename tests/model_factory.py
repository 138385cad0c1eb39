"""Random-weight, real-format model folders for tests (no hub, no torch).

The folder holds what a hub checkpoint holds (config.json, model.safetensors,
tokenizer.json, tokenizer_config.json with a chat template), so tests load it
through the project's real loader.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>",
                  "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]

CORPUS = [
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.",
    "Continuous batching lets many requests share one forward pass; each step decodes a token for all.",
    "Grüße aus München! Ça va très bien. 日本語のテキストも少し。 Emoji: 🙂🚀 and symbols: °C, €, ±.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000, punctuation: , . ; : ! ? ( ) [ ] { } \" ' - _ / \\",
]


def build_tokenizer(out: Path, vocab_size: int) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    tok.save(str(out / "tokenizer.json"))
    return tok.get_vocab_size()


def build_random_model(out: Path, *, hidden: int = 64, layers: int = 2, vocab: int = 1024, seed: int = 0,
                       max_len: int = 2048, arch: str = "llama", extra: dict | None = None) -> Path:
    """A random model; ``llama`` by default so no family plugin adds parsers that
    would reshape its (random) output."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes

    from vllm_mlx.demo.scripts import CHAT_TEMPLATE

    out.mkdir(parents=True, exist_ok=True)
    vocab_size = build_tokenizer(out, vocab)
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "chat_template": CHAT_TEMPLATE, "model_max_length": max_len}))
    from tokenizers import Tokenizer

    eos = Tokenizer.from_file(str(out / "tokenizer.json")).token_to_id("<|im_end|>")
    config = {
        "model_type": arch, "vocab_size": vocab_size, "hidden_size": hidden, "num_hidden_layers": layers,
        "intermediate_size": hidden * 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": hidden // 4, "rms_norm_eps": 1e-6, "max_position_embeddings": max_len,
        "rope_theta": 10000.0, "tie_word_embeddings": False, "eos_token_id": eos, "torch_dtype": "float32",
    }
    if arch == "llama":
        config.update(attention_bias=False, mlp_bias=False)
    config.update(extra or {})
    model_cls, args_cls = _get_classes(config)
    mx.random.seed(seed)
    model = model_cls(args_cls.from_dict(config))
    # An untied, scaled-up output head keeps a random model from collapsing into
    # one repeated token, and makes its logits less flat (greedy picks far from ties).
    weights = dict(tree_flatten(model.parameters()))
    weights = {k: (v * 4.0 if k.endswith("lm_head.weight") else v) for k, v in weights.items()}
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return out
