"""Llama 3.x family: JSON tool calls (optionally after ``<|python_tag|>``).
Llama checkpoints load through the generic mlx-lm loader."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..parsers.llama3_json import Llama3JsonToolParser


@hookimpl
def register_tool_parsers():
    return [Llama3JsonToolParser]
