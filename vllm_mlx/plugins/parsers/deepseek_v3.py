"""DeepSeek V3 / R1 tool calls, written with the model's special tokens::

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather
    ```json
    {"city": "Paris"}
    ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>

DeepSeek V3.1 drops the type and the code fence
(``<｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜>``);
both are read.
"""

from __future__ import annotations

from .json_calls import checked_arguments
from .markup_tools import MarkupToolParser, PartialCall, RegionParse
from .text_scan import json_value_end

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"
FENCE = "```json"


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _may_become(text: str, *markers: str) -> bool:
    return any(m.startswith(text) for m in markers)


class DeepSeekV3ToolParser(MarkupToolParser):
    name = "deepseek_v3"
    starts = (CALLS_BEGIN,)
    template_markers = (CALLS_BEGIN,)

    def parse_region(self, region: str, final: bool) -> RegionParse:
        calls: list[PartialCall] = []
        pos = len(CALLS_BEGIN)
        while True:
            pos = _skip_space(region, pos)
            rest = region[pos:]
            if rest.startswith(CALLS_END):
                if not calls:  # an empty calls block is no call: keep it as text
                    return RegionParse(calls, None, True)
                return RegionParse(calls, pos + len(CALLS_END))
            if not rest.startswith(CALL_BEGIN):
                if final and not rest and calls:
                    return RegionParse(calls, pos)  # stopped before the closing token
                return RegionParse(calls, None, final or not _may_become(rest, CALL_BEGIN, CALLS_END))
            call, pos, error = self._call(region, pos + len(CALL_BEGIN), final)
            if error:
                return RegionParse(calls, None, True)
            if call is None:
                return RegionParse(calls)
            calls.append(call)
            if not call.done:
                return RegionParse(calls)

    def _call(self, region: str, pos: int, final: bool) -> tuple[PartialCall | None, int, bool]:
        sep = region.find(SEP, pos)
        if sep == -1:
            return None, pos, final
        kind, pos = region[pos:sep].strip(), sep + len(SEP)
        if kind == "function":  # V3: name on its own line, then a ```json fence
            newline = region.find("\n", pos)
            if newline == -1:
                return None, pos, final
            name, pos = region[pos:newline].strip(), _skip_space(region, newline)
            if not region.startswith(FENCE, pos):
                return (None, pos, final or not FENCE.startswith(region[pos:]))
            pos += len(FENCE)
        else:  # V3.1: the name came before the separator
            name = kind
        end = json_value_end(region, pos)
        if end is None:
            if final:
                return None, pos, True
            args = region[pos:].lstrip()
            return PartialCall(name, args if args.startswith("{") else ""), pos, False
        arguments = checked_arguments(region[pos:end].strip())
        if arguments is None:
            return None, pos, True
        tail = _skip_space(region, end)
        if kind == "function" and region.startswith("```", tail):
            tail = _skip_space(region, tail + 3)
        if region.startswith(CALL_END, tail):
            return PartialCall(name, arguments, True), tail + len(CALL_END), False
        if final or not _may_become(region[tail:], "```", CALL_END):
            return (PartialCall(name, arguments, True), tail, False) if final else (None, tail, True)
        return PartialCall(name, arguments), tail, False
