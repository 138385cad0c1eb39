"""Tool-call parser for JSON objects between tags, the Hermes / Qwen format::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ..interfaces import ToolCall, ToolParser
from .text_scan import split_safe


class JsonToolTagParser(ToolParser):
    name = "json_tool_tags"
    start = "<tool_call>"
    end = "</tool_call>"

    def __init__(self, tokenizer: Any, tools: list[dict] | None = None, **options: Any):
        super().__init__(tokenizer, tools, **options)
        self.buf = ""
        self.in_call = False

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self.buf += text
        content, calls = [], []
        while self.buf:
            if not self.in_call:
                at = self.buf.find(self.start)
                if at == -1:
                    safe, self.buf = split_safe(self.buf, self.start)
                    content.append(safe)
                    break
                content.append(self.buf[:at])
                self.buf, self.in_call = self.buf[at + len(self.start):], True
            else:
                at = self.buf.find(self.end)
                if at == -1:
                    break
                body, self.buf, self.in_call = self.buf[:at], self.buf[at + len(self.end):], False
                call = self.parse_call(body)
                if call is None:
                    content.append(self.start + body + self.end)
                else:
                    calls.append(call)
        return "".join(content), calls

    def finish(self) -> tuple[str, list[ToolCall]]:
        buf, self.buf = self.buf, ""
        if self.in_call:
            self.in_call = False
            call = self.parse_call(buf)
            return ("", [call]) if call is not None else (self.start + buf, [])
        return buf, []

    @staticmethod
    def parse_call(body: str) -> ToolCall | None:
        try:
            obj = json.loads(body.strip())
        except ValueError:
            return None
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return None
        args = obj.get("arguments", obj.get("parameters", {}))
        arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        return ToolCall(name=obj["name"], arguments=arguments, id=f"call_{uuid.uuid4().hex[:24]}")
