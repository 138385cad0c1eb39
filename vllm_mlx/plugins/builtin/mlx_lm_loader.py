"""The generic loader: any text model type that mlx-lm implements."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ..hookspecs import hookimpl
from ..interfaces import LoadedModel, ModelLoader


def mlx_lm_supports(config: dict) -> bool:
    from mlx_lm.utils import MODEL_REMAPPING

    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        return False
    model_type = MODEL_REMAPPING.get(model_type, model_type)
    return importlib.util.find_spec(f"mlx_lm.models.{model_type}") is not None


def load_with_mlx_lm(path: Path, config: dict, loader_name: str, **options: Any) -> LoadedModel:
    from mlx_lm.utils import load

    # lazy=True: the weights stay on disk until first used (the server process of --engine-process
    # reads only the model's structure; the engine process loads it for real)
    model, tokenizer, full_config = load(str(path), return_config=True, lazy=bool(options.get("lazy", False)))
    ctx = full_config.get("max_position_embeddings") or getattr(tokenizer, "model_max_length", None)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        kind="llm",
        config=full_config,
        path=path,
        loader=loader_name,
        context_length=ctx if isinstance(ctx, int) and 0 < ctx < 10**8 else None,
    )


class MlxLmLoader(ModelLoader):
    name = "mlx-lm"
    kind = "llm"
    priority = 0

    def detect(self, path: Path, config: dict) -> bool:
        return mlx_lm_supports(config)

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        return load_with_mlx_lm(path, config, self.name, **options)


@hookimpl
def register_model_loaders():
    return [MlxLmLoader()]
