"""Mistral family: tool calls after the ``[TOOL_CALLS]`` token, in the older JSON-list
form and the newer ``name[ARGS]{...}`` form. Checkpoints load through mlx-lm."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..parsers.mistral import MistralToolParser


@hookimpl
def register_tool_parsers():
    return [MistralToolParser]
