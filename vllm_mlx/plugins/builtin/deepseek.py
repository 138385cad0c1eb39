"""DeepSeek V3 / R1 family: reasoning that may start without an opening `<think>`
tag, and tool calls written with DeepSeek's special tokens.

R1 chat templates end the prompt with ``<think>\n``, so the model's output
begins inside the reasoning block; the parser treats text before ``</think>``
as reasoning whether or not it saw the opening tag.
"""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..parsers.deepseek_v3 import DeepSeekV3ToolParser
from ..parsers.think_tags import ThinkTagReasoningParser


class DeepSeekR1ReasoningParser(ThinkTagReasoningParser):
    name = "deepseek_r1"
    implicit_start = True


class DeepSeekV31ToolParser(DeepSeekV3ToolParser):
    name = "deepseek_v31"  # the same parser reads both layouts; vLLM's name for the newer one
    template_markers = ()


@hookimpl
def register_reasoning_parsers():
    return [DeepSeekR1ReasoningParser]


@hookimpl
def register_tool_parsers():
    return [DeepSeekV3ToolParser, DeepSeekV31ToolParser]
