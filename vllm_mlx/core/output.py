"""Per-sequence text pipeline: token ids -> text -> stop strings -> parsers.

Runs outside the engine thread (on the caller's event loop), one instance per
generated sequence, so the engine loop only moves token ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..plugins.interfaces import ToolCallDelta, as_deltas, new_call_id
from .params import SamplingParams
from .request import TokenEvent
from .detokenizer import IncrementalDetokenizer
from .stop_strings import StopStringMatcher


@dataclass(slots=True)
class LogprobEntry:
    token: str
    logprob: float
    token_id: int
    top: list[tuple[str, float, int]] = field(default_factory=list)


@dataclass(slots=True)
class SequenceDelta:
    """What one sequence produced since the last delta.

    ``text`` is answer content, ``reasoning`` the reasoning content (when a
    reasoning parser runs), ``tool_calls`` pieces of tool calls (``ToolCallDelta``:
    a call's first piece names it, later ones add to its arguments) when a tool
    parser runs. ``finish_reason`` is set on the last delta: "stop", "length",
    "abort" or "error"; ``stop_reason`` names the stop string or token id.
    """

    index: int
    text: str = ""
    reasoning: str = ""
    tool_calls: list[Any] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[LogprobEntry] | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    error: str | None = None
    num_tokens: int = 0
    cached_tokens: int | None = None  # set once, with the first token: prompt tokens from the prefix cache


class SequenceOutput:
    """Turns one sequence's token events into text deltas."""

    def __init__(
        self,
        index: int,
        tokenizer: Any,
        params: SamplingParams,
        eos_ids: set[int],
        prompt_ids: list[int] | None = None,
        reasoning_parser: Any = None,
        tool_parser: Any = None,
        decode: Any = None,
        stream: bool = True,
    ):
        self.index = index
        self.tokenizer = tokenizer
        self.params = params
        self.stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else set(eos_ids))
        self.detokenizer = IncrementalDetokenizer(tokenizer, prompt_ids, decode)
        self.stops = StopStringMatcher(params.stop, params.include_stop_str_in_output)
        self.reasoning_parser = reasoning_parser
        self.tool_parser = tool_parser
        # A whole reply (not streamed) is parsed once at the end, through the
        # parsers' extract_reasoning / extract_tool_calls.
        self.whole = not stream and (reasoning_parser is not None or tool_parser is not None)
        self.held: list[str] = []
        self.next_call_index = 0
        self.num_tokens = 0
        self.finished = False
        self.finish_reason: str | None = None
        self.stop_reason: str | int | None = None

    def process(self, events: list[TokenEvent]) -> SequenceDelta:
        delta = SequenceDelta(self.index)
        raw = []
        for ev in events:
            if self.finished:
                break
            if ev.cached_tokens is not None:
                delta.cached_tokens = ev.cached_tokens
            if ev.token_id is not None:
                self.num_tokens += 1
                delta.token_ids.append(ev.token_id)
                if ev.finish_reason == "stop" and ev.token_id in self.stop_ids:
                    # The stop token itself is never part of the text.
                    if ev.token_id in self.params.stop_token_ids:
                        self.stop_reason = ev.token_id
                else:
                    raw.append(self.detokenizer.add(ev.token_id))
                if ev.logprob is not None:
                    if delta.logprobs is None:
                        delta.logprobs = []
                    delta.logprobs.append(self._logprob_entry(ev))
            if ev.finish_reason is not None:
                raw.append(self.detokenizer.flush())
                self.finished = True
                self.finish_reason = ev.finish_reason
                delta.error = ev.error
        text, matched = self.stops.feed("".join(raw))
        if matched is not None:
            self.finished = True
            self.finish_reason = "stop"
            self.stop_reason = matched
        elif self.finished:
            text += self.stops.flush()
        if self.whole:
            self.held.append(text)
            if self.finished:
                self._parse_whole(delta, "".join(self.held))
        elif self.reasoning_parser is not None or self.tool_parser is not None:
            self._parse(delta, text)
        else:
            delta.text = text
        delta.num_tokens = self.num_tokens
        if self.finished:
            delta.finish_reason = self.finish_reason
            delta.stop_reason = self.stop_reason
        return delta

    def _parse(self, delta: SequenceDelta, text: str) -> None:
        reasoning, content = "", text
        rp, tp = self.reasoning_parser, self.tool_parser
        if rp is not None:
            rp.delta_token_ids = delta.token_ids
            reasoning, content = rp.feed(text) if text else ("", "")
            if self.finished:
                r2, c2 = rp.finish()
                reasoning += r2
                content += c2
        calls: list[Any] = []
        if tp is not None:
            tp.delta_token_ids = delta.token_ids
            content, pieces = tp.feed(content) if content else ("", [])
            if self.finished:
                c2, p2 = tp.finish()
                content += c2
                pieces = pieces + p2
            if pieces:
                calls = as_deltas(pieces, self.next_call_index)
                self.next_call_index = max(self.next_call_index, max(d.index for d in calls) + 1)
        delta.text, delta.reasoning, delta.tool_calls = content, reasoning, calls

    def _parse_whole(self, delta: SequenceDelta, text: str) -> None:
        reasoning, content = "", text
        if self.reasoning_parser is not None:
            r, c = self.reasoning_parser.extract_reasoning(text)
            reasoning, content = r or "", c or ""
        if self.tool_parser is not None:
            found = self.tool_parser.extract_tool_calls(content)
            if found.tools_called:
                content = found.content or ""
                delta.tool_calls = [ToolCallDelta(index=i, id=c.id or new_call_id(), name=c.name,
                                                  arguments=c.arguments) for i, c in enumerate(found.tool_calls)]
        delta.text, delta.reasoning = content, reasoning

    def _logprob_entry(self, ev: TokenEvent) -> LogprobEntry:
        decode = self.tokenizer.decode
        lp = ev.logprob
        top = [(decode([tid]), val, tid) for tid, val in lp.top]
        return LogprobEntry(decode([lp.token_id]), lp.logprob, lp.token_id, top)
