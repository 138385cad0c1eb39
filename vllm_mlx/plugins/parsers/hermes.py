"""Hermes / Qwen tool calls: a JSON object between tags, one block per call::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>
"""

from __future__ import annotations

from .json_calls import parse_json_call
from .markup_tools import MarkupToolParser, RegionParse


class HermesToolParser(MarkupToolParser):
    name = "hermes"
    start = "<tool_call>"
    end = "</tool_call>"
    starts = (start,)
    template_markers = (start,)

    def parse_region(self, region: str, final: bool) -> RegionParse:
        body = len(self.start)
        close = region.find(self.end, body)
        if close == -1:
            call, end, error = parse_json_call(region, body, final)
            if final and end is not None and not error and not region[end:].strip():
                return RegionParse([call], len(region))  # the model stopped before the closing tag
            if error and end is not None and not final:
                return RegionParse([call] if call.name else [])  # complete but invalid: settle it at the closing tag
            return RegionParse([call] if call.name else [], None, error or final)
        call, end, error = parse_json_call(region[:close], body, True)
        region_end = close + len(self.end)
        if error or end is None or region[end:close].strip():
            return RegionParse([call] if call.name else [], region_end, True)
        return RegionParse([call], region_end)
