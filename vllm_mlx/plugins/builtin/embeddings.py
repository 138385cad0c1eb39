"""Decoder embedding models (Qwen3-Embedding, gte-Qwen2, e5-mistral, ...) through mlx-lm.

Detected from sentence-transformers metadata: ``modules.json`` naming a Pooling
module, whose ``config.json`` (usually ``1_Pooling/config.json``) gives the
pooling mode. ``--runner pooling`` loads any mlx-lm decoder this way, pooling its
last token. Encoder families (BERT, XLM-R, ...) need another loader plugin of
kind ``embedding`` returning an ``EmbeddingModel``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..hookspecs import hookimpl
from ..interfaces import LoadedModel, ModelLoader
from .mlx_lm_loader import mlx_lm_supports

log = logging.getLogger("vllm_mlx.models")

POOLING_KEYS = {"pooling_mode_lasttoken": "last", "pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
UNSUPPORTED_KEYS = ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")
# families whose sentence-transformers checkpoints were trained for truncated (Matryoshka) vectors
MATRYOSHKA_TYPES = {"qwen3"}  # Qwen3-Embedding: "MRL support" in every size


class EmbeddingMetadataError(ValueError):
    """The sentence-transformers metadata asks for something this loader cannot do."""


def st_modules(path: Path) -> list[dict] | None:
    """The ``modules.json`` list, or None when the folder has none (or it is unreadable)."""
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    return modules if isinstance(modules, list) else None


def _module(modules: list[dict], kind: str) -> dict | None:
    return next((m for m in modules if isinstance(m, dict) and str(m.get("type", "")).endswith(f".{kind}")), None)


def pooling_mode(path: Path, modules: list[dict]) -> str:
    """``last``, ``mean`` or ``cls`` from the Pooling module's config."""
    pooling = _module(modules, "Pooling")
    config_path = path / str(pooling.get("path") or "1_Pooling") / "config.json"
    try:
        cfg = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise EmbeddingMetadataError(f"cannot read the pooling config {config_path}: {exc}") from None
    if isinstance(cfg.get("pooling_mode"), str):  # a single-key spelling some exporters write
        mode = {"lasttoken": "last", "last": "last", "mean": "mean", "cls": "cls"}.get(cfg["pooling_mode"])
        if mode is None:
            raise EmbeddingMetadataError(f"{config_path} asks for pooling {cfg['pooling_mode']!r}; this loader "
                                         "pools one of: last token, mean, cls")
        return mode
    modes = [mode for key, mode in POOLING_KEYS.items() if cfg.get(key)]
    others = [key for key in UNSUPPORTED_KEYS if cfg.get(key)]
    if others or len(modes) != 1:
        asked = ", ".join([k for k in POOLING_KEYS if cfg.get(k)] + others) or "none"
        raise EmbeddingMetadataError(f"{config_path} asks for pooling {asked}; this loader pools one of: "
                                     "last token, mean, cls")
    return modes[0]


def _check_modules(modules: list[dict]) -> None:
    known = {"Transformer", "Pooling", "Normalize"}
    extra = [str(m.get("type")) for m in modules if str(m.get("type", "")).rsplit(".", 1)[-1] not in known]
    if extra:
        raise EmbeddingMetadataError(f"modules.json names modules this loader cannot run: {', '.join(extra)} "
                                     "(it runs Transformer, Pooling and Normalize)")


def load_decoder_body(path: Path) -> tuple[Any, dict]:
    """mlx-lm's model with only its transformer body's weights required.

    Embedding checkpoints often hold the body alone: no LM head, and keys without
    the ``model.`` prefix (saved from ``AutoModel``). mlx-lm's strict loading
    refuses both, so we fix the keys in ``sanitize`` and load non-strictly, then
    check that every weight of the body was in the files.
    """
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes, load_model

    seen: set[str] = set()

    def classes(config: dict):
        model_cls, args_cls = _get_classes(config)

        class BodyOnly(model_cls):
            def sanitize(self, weights):
                if not any(k.startswith("model.") for k in weights):
                    weights = {f"model.{k}": v for k, v in weights.items()}
                weights = {k: v for k, v in weights.items() if not k.startswith("lm_head.")}
                if hasattr(super(), "sanitize"):
                    weights = super().sanitize(weights)
                seen.update(weights)
                return weights

        return BodyOnly, args_cls

    model, config = load_model(path, lazy=True, strict=False, get_model_classes=classes)
    body = getattr(model, "model", None)
    if body is None or not callable(body):
        raise EmbeddingMetadataError(f"mlx-lm's {config.get('model_type')!r} model has no transformer body "
                                     "(`model.model`) to take hidden states from")
    names = [f"model.{k}" for k, _ in tree_flatten(body.parameters())]
    missing = [n for n in names if n not in seen]
    if missing:
        raise EmbeddingMetadataError(f"the weights lack {len(missing)} tensors of the model body, e.g. {missing[0]}")
    mx.eval(body.parameters())
    return model, config


class DecoderEmbeddingLoader(ModelLoader):
    name = "decoder-embedding"
    kind = "embedding"
    priority = 20  # before the family LLM loaders, which would claim the same model types

    def detect(self, path: Path, config: dict) -> bool:
        modules = st_modules(path)
        return bool(modules) and _module(modules, "Pooling") is not None and mlx_lm_supports(config)

    def accepts(self, path: Path, config: dict) -> bool:
        return mlx_lm_supports(config)

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        from mlx_lm.utils import load_tokenizer

        from ...core.pooling import DecoderEmbedder

        modules = st_modules(path)
        has_metadata = bool(modules) and _module(modules, "Pooling") is not None
        if has_metadata:
            _check_modules(modules)
            pooling = pooling_mode(path, modules)
        else:
            pooling = "last"
        model, full_config = load_decoder_body(path)
        tokenizer = load_tokenizer(path, eos_token_ids=full_config.get("eos_token_id"))
        hidden = full_config.get("hidden_size") or model.args.hidden_size
        matryoshka = full_config.get("matryoshka_dimensions") or bool(full_config.get("is_matryoshka")) \
            or (has_metadata and full_config.get("model_type") in MATRYOSHKA_TYPES)
        pad = getattr(tokenizer, "pad_token_id", None)
        embedder = DecoderEmbedder(model, hidden, pooling, matryoshka=matryoshka,
                                   pad_id=pad if isinstance(pad, int) else 0)
        ctx = full_config.get("max_position_embeddings") or getattr(tokenizer, "model_max_length", None)
        log.info("embedding model: %s pooling, %d dimensions, truncatable: %s", pooling, hidden, matryoshka)
        return LoadedModel(model=embedder, tokenizer=tokenizer, kind="embedding", config=full_config, path=path,
                           loader=self.name,
                           context_length=ctx if isinstance(ctx, int) and 0 < ctx < 10**8 else None)


@hookimpl
def register_model_loaders():
    return [DecoderEmbeddingLoader()]
