"""The streaming machinery every built-in tool parser shares.

A format only says where tool-call markup starts (``starts``, or ``find_start``)
and how to read a markup region (``parse_region``). This class does the rest:
it passes plain text through, holds back what may be the start of a marker,
re-reads the open region as text arrives (regions are short, so re-reading is
cheap and keeps each format's code a plain function of its text), and turns
the calls read so far into OpenAI-style deltas: a header (index, id, name)
once a call's name is known, then each new piece of its JSON arguments.

Markup that turns out not to be a valid call comes back as plain content,
as long as no piece of it has been sent; a header already streamed cannot be
taken back, so such a call ends with the arguments as the model wrote them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..interfaces import ExtractedToolCalls, ToolCallDelta, ToolParser, merge_tool_call_pieces, new_call_id
from .text_scan import held_prefix

log = logging.getLogger("vllm_mlx.parsers")


@dataclass
class PartialCall:
    """A call as far as it has been read: ``arguments`` only ever grows (each
    reading extends the previous one), ``done`` once the call is complete and valid."""

    name: str | None = None
    arguments: str = ""
    done: bool = False


@dataclass
class RegionParse:
    """One reading of a markup region.

    ``end``: where the region ends in its text (what follows is content again),
    None while it is still open. ``error``: the markup is not a valid call.
    """

    calls: list[PartialCall] = field(default_factory=list)
    end: int | None = None
    error: bool = False


class MarkupToolParser(ToolParser):
    starts: tuple[str, ...] = ()
    stream_early = True  # announce a call as soon as its name is known (off for whole replies)

    def __init__(self, tokenizer: Any, tools: list[dict] | None = None, **options: Any):
        super().__init__(tokenizer, tools, **options)
        self.buf = ""
        self.in_region = False
        self.sent: list[list[int]] = []  # per call of the open region: [index, argument chars sent]
        self.next_index = 0
        self.seen_text = False  # any non-blank content so far
        self.after_call = False  # blank text right after a call is dropped

    # -- what a format provides ----------------------------------------------------
    def find_start(self, text: str) -> int:
        """Index of the first markup start in ``text``, or -1."""
        found = [i for i in (text.find(s) for s in self.starts) if i != -1]
        return min(found) if found else -1

    def hold(self, text: str) -> int:
        """How many trailing chars of ``text`` to hold back: they may start markup."""
        return held_prefix(text, self.starts)

    def parse_region(self, region: str, final: bool) -> RegionParse:
        raise NotImplementedError

    def tool_schema(self, name: str) -> dict:
        """The JSON Schema of the request's tool ``name`` ({} if unknown)."""
        for tool in self.tools:
            fn = tool.get("function") or {}
            if fn.get("name") == name:
                return fn.get("parameters") or {}
        return {}

    # -- the streaming interface -------------------------------------------------------
    def feed(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        self.buf += text
        return self._run(final=False)

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        return self._run(final=True)

    def extract_tool_calls(self, model_output: str, request: Any = None) -> ExtractedToolCalls:
        self.stream_early = False
        content, pieces = self.feed(model_output)
        c2, p2 = self.finish()
        calls = merge_tool_call_pieces(pieces + p2)
        text = content + c2
        return ExtractedToolCalls(bool(calls), calls, text if text.strip() or not calls else None)

    def _run(self, final: bool) -> tuple[str, list[ToolCallDelta]]:
        content: list[str] = []
        deltas: list[ToolCallDelta] = []
        while True:
            if not self.in_region:
                if self.after_call:
                    stripped = self.buf.lstrip()
                    if not stripped:
                        self.buf = ""
                        break
                    self.buf, self.after_call = stripped, False
                at = self.find_start(self.buf)
                if at == -1:
                    keep = 0 if final else self.hold(self.buf)
                    self._content(content, self.buf[:len(self.buf) - keep])
                    self.buf = self.buf[len(self.buf) - keep:]
                    break
                self._content(content, self.buf[:at])
                self.buf, self.in_region, self.sent = self.buf[at:], True, []
            try:
                res = self.parse_region(self.buf, final)
            except Exception:  # noqa: BLE001 - a parser bug must not fail the request: give the text back
                log.exception("%s failed to read %r", type(self).__name__, self.buf[:200])
                res = RegionParse(error=True)
            if final and not res.error and (res.end is None or not all(c.done for c in res.calls)):
                res.error = True  # the reply ended inside unfinished markup
            if res.error:
                end = len(self.buf) if res.end is None or res.end <= 0 else res.end
                if not self.sent:
                    self._content(content, self.buf[:end])
                else:  # too late to make it content: finish the call with the model's own text
                    self._announce(res.calls, deltas)
                    log.warning("%s: malformed tool call after its header was streamed: %r", self.name,
                                self.buf[:200])
                self.buf, self.in_region = self.buf[end:], False
                if not self.buf:
                    break
                continue
            self._announce(res.calls, deltas)
            if res.end is None:
                break
            self.buf, self.in_region, self.after_call = self.buf[res.end:], False, True
            if not self.buf:
                break
        return "".join(content), deltas

    def _content(self, out: list[str], text: str) -> None:
        if text:
            out.append(text)
            if not self.seen_text and text.strip():
                self.seen_text = True

    def _announce(self, calls: list[PartialCall], deltas: list[ToolCallDelta]) -> None:
        for i, call in enumerate(calls):
            if call.name is None or not (self.stream_early or call.done):
                break
            if i == len(self.sent):
                deltas.append(ToolCallDelta(index=self.next_index, id=new_call_id(), name=call.name, arguments=""))
                self.sent.append([self.next_index, 0])
                self.next_index += 1
            index, done = self.sent[i]
            if len(call.arguments) > done:
                deltas.append(ToolCallDelta(index=index, arguments=call.arguments[done:]))
                self.sent[i][1] = len(call.arguments)
