"""Gemma 3 family: text checkpoints load through mlx-lm (the multimodal
checkpoints, with a vision tower, go to the vision loader once mlx-vlm support
lands); tool calls are Python calls in a ``tool_code`` block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..hookspecs import hookimpl
from ..interfaces import LoadedModel, ModelLoader
from ..parsers.gemma_tool_code import GemmaToolCodeParser
from .mlx_lm_loader import load_with_mlx_lm, mlx_lm_supports


class Gemma3TextLoader(ModelLoader):
    name = "gemma3"
    kind = "llm"
    priority = 10

    def detect(self, path: Path, config: dict) -> bool:
        return config.get("model_type") in ("gemma3_text", "gemma3") and "vision_config" not in config \
            and mlx_lm_supports(config)

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        return load_with_mlx_lm(path, config, self.name, **options)


@hookimpl
def register_model_loaders():
    return [Gemma3TextLoader()]


@hookimpl
def register_tool_parsers():
    return [GemmaToolCodeParser]
