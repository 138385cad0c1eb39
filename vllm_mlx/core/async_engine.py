"""asyncio front of the engine: submit a prompt, iterate over text deltas.

Every entry point (chat, completions, the MCP loop, the Python API) goes
through ``AsyncEngine.generate``, so stop strings, parsers, cancellation and
metrics live in one place.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from ..plugins.interfaces import ToolCall, ToolCallDelta, merge_tool_call_pieces
from .detokenizer import fast_decoder
from .engine import Engine
from .guided import GrammarCompiler
from .metrics import Metrics
from .output import LogprobEntry, SequenceDelta, SequenceOutput
from .params import SamplingParams
from .request import EngineRequest, TokenEvent

log = logging.getLogger("vllm_mlx.engine")

ParserFactory = Callable[[int], tuple[Any, Any]]  # sequence index -> (reasoning, tool) parsers


class _LoopSink:
    """Hands one engine step's events to the event loop in a single callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.routes: dict[str, tuple[asyncio.Queue, int]] = {}

    def deliver(self, events: list[TokenEvent]) -> None:
        self.loop.call_soon_threadsafe(self._dispatch, events)

    def _dispatch(self, events: list[TokenEvent]) -> None:
        now = time.monotonic()
        routes = self.routes
        for ev in events:
            route = routes.get(ev.request_id)
            if route is not None:
                route[0].put_nowait((route[1], ev, now))


class AsyncEngine:
    """Wraps an ``Engine`` for use from one asyncio event loop."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self._decode = fast_decoder(engine.tokenizer)
        self.metrics = Metrics()
        self._sinks: dict[int, _LoopSink] = {}
        self._ids = itertools.count()
        self.in_flight = 0  # sequences submitted and not yet finished, from this front
        self._grammar: GrammarCompiler | None = None

    @property
    def grammar(self) -> GrammarCompiler:
        """Compiles structured-output grammars for this model's tokenizer (built on first use)."""
        if self._grammar is None:
            self._grammar = GrammarCompiler(self.tokenizer, self.engine.vocab_size, self.engine.eos_token_ids)
        return self._grammar

    def _sink(self) -> _LoopSink:
        loop = asyncio.get_running_loop()
        sink = self._sinks.get(id(loop))
        if sink is None or sink.loop is not loop:
            sink = self._sinks[id(loop)] = _LoopSink(loop)
        return sink

    async def generate(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        request_id: str | None = None,
        parsers: ParserFactory | None = None,
        stream: bool = True,
        mm: Any = None,
    ) -> AsyncIterator[SequenceDelta]:
        """Yield deltas of all ``params.n`` sequences as they come (each tagged
        with its ``index``); the last delta of each sequence has ``finish_reason``.

        With ``stream=False`` the parsers read each sequence whole when it ends
        (``extract_reasoning`` / ``extract_tool_calls``) instead of piece by piece.
        ``mm`` (a ``core.vision.MultiModalInput``) carries a vision request's media.
        Closing the iterator early (client gone) aborts the unfinished sequences.
        Raises ``ParamError`` for out-of-range settings; a prompt the engine cannot
        run (empty, ids outside the vocabulary) ends with ``finish_reason="error"``.
        """
        params.validate()
        request_id = request_id or uuid.uuid4().hex
        sink = self._sink()
        queue: asyncio.Queue = asyncio.Queue()
        outputs: dict[str, SequenceOutput] = {}
        eos = self.engine.eos_token_ids
        arrival = time.monotonic()
        for i in range(params.n):
            sub_id = f"{request_id}-{i}-{next(self._ids)}"
            seq_params = params
            if params.n > 1:
                seq_params = _copy_params(params, seed=None if params.seed is None else params.seed + i)
            reasoning, tools = parsers(i) if parsers else (None, None)
            outputs[sub_id] = SequenceOutput(i, self.tokenizer, seq_params, eos, prompt_ids, reasoning, tools,
                                             self._decode, stream)
            sink.routes[sub_id] = (queue, i)
            self.engine.submit(EngineRequest(sub_id, list(prompt_ids), seq_params, sink, arrival=arrival, mm=mm))
            self.in_flight += 1
        self.metrics.prompt_tokens += len(prompt_ids) * params.n
        by_index = {out.index: (sub_id, out) for sub_id, out in outputs.items()}
        open_ids = set(outputs)
        last_token_at: dict[int, float] = {}
        try:
            while open_ids:
                batch = [await queue.get()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                grouped: dict[int, list[TokenEvent]] = {}
                for index, ev, at in batch:
                    grouped.setdefault(index, []).append(ev)
                    if ev.token_id is not None:
                        self._observe_token(index, at, arrival, last_token_at)
                for index, events in grouped.items():
                    sub_id, out = by_index[index]
                    if sub_id not in open_ids:
                        continue
                    try:
                        delta = out.process(events)
                    except Exception as exc:  # noqa: BLE001 - a parser or detokenizer bug ends this sequence only
                        delta = self._failed(out, exc)
                    if out.finished:
                        open_ids.discard(sub_id)
                        self.in_flight -= 1
                        sink.routes.pop(sub_id, None)
                        if events[-1].finish_reason is None:  # a stop string ended it early
                            self.engine.abort(sub_id)
                        self.metrics.generation_tokens += out.num_tokens
                        self.metrics.finish(delta.finish_reason or "stop")
                        self.metrics.e2e.observe(time.monotonic() - arrival)
                    yield delta
        finally:
            self.in_flight -= len(open_ids)
            for sub_id in open_ids:
                sink.routes.pop(sub_id, None)
                self.engine.abort(sub_id)
                self.metrics.finish("abort")

    @staticmethod
    def _failed(out: SequenceOutput, exc: Exception) -> SequenceDelta:
        message = f"output processing failed: {type(exc).__name__}: {exc}"
        log.error("%s\n%s", message, traceback.format_exc())
        out.finished, out.finish_reason = True, "error"
        return SequenceDelta(out.index, finish_reason="error", error=message, num_tokens=out.num_tokens)

    def _observe_token(self, index: int, at: float, arrival: float, last: dict[int, float]) -> None:
        prev = last.get(index)
        if prev is None:
            self.metrics.ttft.observe(at - arrival)
        else:
            self.metrics.itl.observe(at - prev)
        last[index] = at

    async def generate_all(self, prompt_ids: list[int], params: SamplingParams, **kw) -> list[SequenceResult]:
        """Run to completion; one accumulated result per sequence, by index."""
        results = [SequenceResult(i) for i in range(params.n)]
        async for delta in self.generate(prompt_ids, params, **kw):
            results[delta.index].add(delta)
        return results


@dataclass
class SequenceResult:
    """A whole sequence, accumulated from its deltas (for non-streaming replies)."""

    index: int
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[LogprobEntry] | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    error: str | None = None
    cached_tokens: int = 0

    def add(self, d: SequenceDelta) -> None:
        if d.cached_tokens is not None:
            self.cached_tokens = d.cached_tokens
        self.text += d.text
        self.reasoning += d.reasoning
        if d.tool_calls:
            self.tool_calls = merge_tool_call_pieces(self._calls_as_deltas() + d.tool_calls)
        self.token_ids.extend(d.token_ids)
        if d.logprobs is not None:
            self.logprobs = (self.logprobs or []) + d.logprobs
        if d.finish_reason is not None:
            self.finish_reason, self.stop_reason, self.error = d.finish_reason, d.stop_reason, d.error

    def _calls_as_deltas(self) -> list[ToolCallDelta]:
        return [ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.arguments)
                for i, c in enumerate(self.tool_calls)]


def _copy_params(params: SamplingParams, **changes) -> SamplingParams:
    fields = {name: getattr(params, name) for name in params.__slots__}
    fields.update(changes)
    return SamplingParams(**fields)
