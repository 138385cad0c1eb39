"""Per-sequence text pipeline: token ids -> text -> stop strings -> parsers.

Runs outside the engine thread (on the caller's event loop), one instance per
generated sequence, so the engine loop only moves token ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    reasoning parser runs), ``tool_calls`` completed tool calls (when a tool
    parser runs). ``finish_reason`` is set on the last delta: "stop", "length",
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
    ):
        self.index = index
        self.tokenizer = tokenizer
        self.params = params
        self.stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else set(eos_ids))
        self.detokenizer = IncrementalDetokenizer(tokenizer, prompt_ids, decode)
        self.stops = StopStringMatcher(params.stop, params.include_stop_str_in_output)
        self.reasoning_parser = reasoning_parser
        self.tool_parser = tool_parser
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
        self._parse(delta, text)
        delta.num_tokens = self.num_tokens
        if self.finished:
            delta.finish_reason = self.finish_reason
            delta.stop_reason = self.stop_reason
        return delta

    def _parse(self, delta: SequenceDelta, text: str) -> None:
        reasoning, content = "", text
        if self.reasoning_parser is not None:
            reasoning, content = self.reasoning_parser.feed(text)
            if self.finished:
                r2, c2 = self.reasoning_parser.finish()
                reasoning += r2
                content += c2
        calls: list[Any] = []
        if self.tool_parser is not None:
            content, calls = self.tool_parser.feed(content)
            if self.finished:
                c2, calls2 = self.tool_parser.finish()
                content += c2
                calls = calls + calls2
        delta.text, delta.reasoning, delta.tool_calls = content, reasoning, calls

    def _logprob_entry(self, ev: TokenEvent) -> LogprobEntry:
        decode = self.tokenizer.decode
        lp = ev.logprob
        top = [(decode([tid]), val, tid) for tid, val in lp.top]
        return LogprobEntry(decode([lp.token_id]), lp.logprob, lp.token_id, top)
