"""Mistral tool calls after the ``[TOOL_CALLS]`` token, in either form::

    [TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]   (older models)
    [TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}                          (newer models)
"""

from __future__ import annotations

import re

from .json_calls import checked_arguments, parse_call_sequence
from .markup_tools import MarkupToolParser, PartialCall, RegionParse
from .text_scan import held_prefix, json_value_end

TOOL_CALLS = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
_NAME = re.compile(r"[\w.\-]*")


class MistralToolParser(MarkupToolParser):
    name = "mistral"
    starts = (TOOL_CALLS,)
    template_markers = (TOOL_CALLS,)

    def parse_region(self, region: str, final: bool) -> RegionParse:
        pos = len(TOOL_CALLS)
        while pos < len(region) and region[pos].isspace():
            pos += 1
        if pos >= len(region):
            return RegionParse(error=final)
        if ARGS.startswith(region[pos:]) and not final:
            return RegionParse()  # "[" may open a JSON list or be "[ARGS]" of a nameless call
        if region[pos] == "[" and not region.startswith(ARGS, pos):
            return self._json_list(region, pos, final)
        return self._name_args(region, pos, final)

    def _json_list(self, region: str, pos: int, final: bool) -> RegionParse:
        end = json_value_end(region, pos)
        body = region[:end - 1] if end is not None else region
        calls, after, error = parse_call_sequence(body, pos + 1, end is not None or final, ",")
        if error or (end is not None and body[after:].strip()):
            return RegionParse(calls, end, True)
        return RegionParse(calls, end)

    def _name_args(self, region: str, pos: int, final: bool) -> RegionParse:
        at = region.find(ARGS, pos)
        head = region[pos:] if at == -1 else region[pos:at]
        if at == -1:  # "[ARGS]" may be arriving
            head = head[:len(head) - held_prefix(head, (ARGS, CALL_ID))]
        name = head.split(CALL_ID)[0].strip()
        if not _NAME.fullmatch(name) or (at == -1 and final):
            return RegionParse(error=True)
        if at == -1:
            return RegionParse()
        start = at + len(ARGS)
        end = json_value_end(region, start)
        if end is None:
            if final:
                return RegionParse(error=True)
            args = region[start:].lstrip()
            return RegionParse([PartialCall(name, args if args.startswith("{") else "")])
        raw = region[start:end].strip()
        arguments = checked_arguments(raw)
        if arguments is None:
            return RegionParse([], end, True)
        return RegionParse([PartialCall(name, arguments, True)], end)
