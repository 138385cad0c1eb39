"""Qwen3-Coder tool calls: XML-style function and parameter tags::

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    </function>
    </tool_call>

Parameter values are text; the tool's JSON Schema says which are strings and
which are JSON (numbers, booleans, objects). Arguments stream one parameter at
a time, as JSON: ``{"city": "Paris"`` ... ``}``.
"""

from __future__ import annotations

import json
import re

from .markup_tools import MarkupToolParser, PartialCall, RegionParse

_FUNCTION = re.compile(r"\s*<function=([^>\n]+)>")
_PARAM = re.compile(r"\s*<parameter=([^>\n]+)>(.*?)</parameter>", re.S)
_END_FUNCTION = re.compile(r"\s*</function>")


class Qwen3XmlToolParser(MarkupToolParser):
    name = "qwen3_coder"
    start = "<tool_call>"
    end = "</tool_call>"
    starts = (start,)
    template_markers = ("<tool_call>", "<function=", "<parameter=")

    def value_json(self, function: str, param: str, raw: str) -> str:
        if raw.startswith("\n"):
            raw = raw[1:]
        if raw.endswith("\n"):
            raw = raw[:-1]
        kind = (self.tool_schema(function).get("properties") or {}).get(param, {}).get("type", "string")
        if kind != "string":
            try:
                return json.dumps(json.loads(raw), ensure_ascii=False)
            except ValueError:
                pass
        return json.dumps(raw, ensure_ascii=False)

    def parse_region(self, region: str, final: bool) -> RegionParse:
        pos = len(self.start)
        fn = _FUNCTION.match(region, pos)
        if fn is None:
            rest = region[pos:].lstrip()
            if final or (rest and not ("<function=".startswith(rest[:10]) or rest.startswith("<function="))):
                return RegionParse(error=True)
            return RegionParse()
        name, pos = fn.group(1).strip(), fn.end()
        parts = []
        while (param := _PARAM.match(region, pos)) is not None:
            parts.append(f"{json.dumps(param.group(1).strip())}: {self.value_json(name, param.group(1).strip(), param.group(2))}")
            pos = param.end()
        args = "{" + ", ".join(parts)
        closed = _END_FUNCTION.match(region, pos)
        if closed is None:
            if final:
                return RegionParse([PartialCall(name, args + "}", True)], len(region))
            return RegionParse([PartialCall(name, args)])
        close = region.find(self.end, closed.end())
        if close == -1:
            if final or region[closed.end():].strip() and not self.end.startswith(region[closed.end():].strip()):
                return RegionParse([PartialCall(name, args + "}", True)], closed.end())
            return RegionParse([PartialCall(name, args)])
        return RegionParse([PartialCall(name, args + "}", True)], close + len(self.end))
