"""Parsers for replies whose shape a grammar forced (``tool_choice`` "required" or
a named function), so the output is plain JSON rather than a model's markup:

* a named function: the reply is that function's arguments object;
* "required": the reply is a list of ``{"name": ..., "parameters": {...}}``.

The server picks these itself; they are not registered by name.
"""

from __future__ import annotations

from typing import Any

from .json_calls import checked_arguments, parse_call_sequence
from .markup_tools import MarkupToolParser, PartialCall, RegionParse
from .text_scan import json_value_end


class _WholeReply(MarkupToolParser):
    def find_start(self, text: str) -> int:
        return 0 if text.strip() and not self.seen_text else -1

    def hold(self, text: str) -> int:
        return len(text) if not self.seen_text else 0


class NamedFunctionParser(_WholeReply):
    name = "named_function"

    def __init__(self, tokenizer: Any, tools: list[dict] | None = None, *, function: str = "", **options: Any):
        super().__init__(tokenizer, tools, **options)
        self.function = function

    def parse_region(self, region: str, final: bool) -> RegionParse:
        end = json_value_end(region, 0)
        if end is None:
            if final:
                return RegionParse(error=True)
            return RegionParse([PartialCall(self.function, region.lstrip())])
        arguments = checked_arguments(region[:end].strip())
        if arguments is None:
            return RegionParse([], end, True)
        return RegionParse([PartialCall(self.function, arguments, True)], end)


class RequiredCallsParser(_WholeReply):
    name = "required_calls"

    def parse_region(self, region: str, final: bool) -> RegionParse:
        start = len(region) - len(region.lstrip())
        if region[start:start + 1] != "[":
            return RegionParse(error=True)
        end = json_value_end(region, start)
        body = region[:end - 1] if end is not None else region
        calls, after, error = parse_call_sequence(body, start + 1, end is not None or final, ",")
        if error or (end is not None and body[after:].strip()):
            return RegionParse(calls, end, True)
        return RegionParse(calls, end)
