"""Qwen3 (and Qwen2.5) family: `<think>` reasoning, Hermes-style JSON tool calls and
Qwen3-Coder's XML tool calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..hookspecs import hookimpl
from ..interfaces import LoadedModel, ModelLoader
from ..parsers.hermes import HermesToolParser
from ..parsers.qwen3_xml import Qwen3XmlToolParser
from ..parsers.think_tags import ThinkTagReasoningParser
from .mlx_lm_loader import load_with_mlx_lm, mlx_lm_supports

QWEN_TYPES = {"qwen2", "qwen3", "qwen3_moe", "qwen3_next"}


class Qwen3ReasoningParser(ThinkTagReasoningParser):
    name = "qwen3"


class Qwen3ToolParser(HermesToolParser):
    name = "qwen3"
    template_markers = ()  # the same format as hermes; auto-detection names that one


class Qwen3Loader(ModelLoader):
    """mlx-lm loading, plus default parsers so tool calls and reasoning work unflagged."""

    name = "qwen3"
    kind = "llm"
    priority = 10

    def detect(self, path: Path, config: dict) -> bool:
        return config.get("model_type") in QWEN_TYPES and mlx_lm_supports(config)

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        loaded = load_with_mlx_lm(path, config, self.name, **options)
        loaded.default_tool_parser = "hermes"
        if config.get("model_type", "").startswith("qwen3") and getattr(loaded.tokenizer, "has_thinking", False):
            loaded.default_reasoning_parser = "qwen3"
        return loaded


@hookimpl
def register_model_loaders():
    return [Qwen3Loader()]


@hookimpl
def register_reasoning_parsers():
    return [Qwen3ReasoningParser]


@hookimpl
def register_tool_parsers():
    return [HermesToolParser, Qwen3ToolParser, Qwen3XmlToolParser]
