"""Llama 3.x JSON tool calls: the reply is one or more call objects, optionally
after ``<|python_tag|>``, separated by ``;``::

    <|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}

A reply that only starts with ``{`` is read as calls too; if it is not a call
object, it comes back as content.
"""

from __future__ import annotations

from .json_calls import parse_call_sequence
from .markup_tools import MarkupToolParser, RegionParse

PYTHON_TAG = "<|python_tag|>"


class Llama3JsonToolParser(MarkupToolParser):
    name = "llama3_json"
    starts = (PYTHON_TAG,)
    template_markers = ("<|python_tag|>",)

    def find_start(self, text: str) -> int:
        at = text.find(PYTHON_TAG)
        if at == -1 and not self.seen_text and text.lstrip().startswith("{"):
            return len(text) - len(text.lstrip())
        return at

    def hold(self, text: str) -> int:
        if not self.seen_text and not text.strip():
            return len(text)  # blank so far: a call object may still follow
        return super().hold(text)

    def parse_region(self, region: str, final: bool) -> RegionParse:
        pos = len(PYTHON_TAG) if region.startswith(PYTHON_TAG) else 0
        calls, after, error = parse_call_sequence(region, pos, final, ";")
        if error:
            return RegionParse(calls, None, True)
        if calls and all(c.done for c in calls) and region[after:].strip(" \t\r\n;") and \
                not region[after:].lstrip(" \t\r\n;").startswith("{"):
            return RegionParse(calls, after)  # other text follows the calls
        return RegionParse(calls, len(region) if final else None)
