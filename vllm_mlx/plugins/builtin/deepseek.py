"""DeepSeek-R1 family: reasoning that may start without an opening `<think>` tag.

R1 chat templates end the prompt with ``<think>\n``, so the model's output
begins inside the reasoning block; the parser treats text before ``</think>``
as reasoning whether or not it saw the opening tag.
"""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..parsers.think_tags import ThinkTagReasoningParser


class DeepSeekR1ReasoningParser(ThinkTagReasoningParser):
    name = "deepseek_r1"
    implicit_start = True


@hookimpl
def register_reasoning_parsers():
    return [DeepSeekR1ReasoningParser]
