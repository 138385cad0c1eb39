"""The one generation pipeline behind every API.

Each API (Chat Completions, Completions, Anthropic Messages, ...) is an adapter:
it translates its request into a ``ChatRequest``, calls ``prepare`` + ``Generation.start``,
and renders the ``Generation``'s event stream in its own wire format. Everything
between (chat template, context check, sampling, tool-choice grammar, reasoning and
tool parsing, usage, cache hits, error and finish classification) happens here once.

The event stream is the engine's ``SequenceDelta``: text, reasoning and tool-call
pieces, then a last delta with ``finish_reason``; ``Generation`` keeps usage as it
passes and turns an engine failure into an ``APIError`` raised from the iterator.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from ..core import SamplingParams, SequenceResult
from ..core.output import SequenceDelta
from ..core.vision import salted
from .chat_template import check_tools, render_messages
from .errors import APIError
from .sampling import resolve_max_tokens, to_sampling_params
from .schemas.common import SamplingFields
from .state import ServerState
from .structured import OutputPlan, compile_plan, forced_tool_parser, plan_output
from .routes.common import check_capacity, engine_error, new_id


@dataclass
class ChatRequest:
    """What every API asks of the model, in one shape.

    ``messages`` are template-ready dicts (``role``, ``content``, ``tool_calls`` with
    mapping arguments, ``tool_call_id``, ``reasoning_content``); ``tools`` are OpenAI
    function tools; ``tool_choice`` is OpenAI's (``auto``/``none``/``required``/a named
    function). Or ``prompt_ids`` for a raw prompt (no template, no parsers). Parser
    plugins get this object as ``request`` (its field names follow a chat request's).
    """

    model: str | None
    sampling: SamplingFields  # temperature, top_p, stop, seed, n, ... (OpenAI's and vLLM's names)
    max_tokens: int | None = None  # None: all the room the context leaves
    messages: list[dict[str, Any]] | None = None
    prompt_ids: list[int] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    logprobs: int | None = None  # top-k alternatives per token (0: the chosen token's only)
    stream: bool = False
    clamp_max_tokens: bool = False  # cut max_tokens to the room left instead of a 400
    id_prefix: str = "chatcmpl"
    media: list[tuple[str, dict]] | None = None  # a vision model's image parts, (where, part), in prompt order
    mm_processor_kwargs: dict[str, Any] | None = None
    vision: tuple[list[int], Any] | None = None  # (prompt ids, MultiModalInput): set by ``load_media``


def reads_images(state: ServerState) -> bool:
    """Whether the served model takes media (adapters turn image parts into ``ChatRequest.media``)."""
    return state.loaded.kind == "mllm"


async def load_media(state: ServerState, req: ChatRequest) -> None:
    """Fetch and decode a request's images and run the model's processor over the
    templated text (off the event loop and the engine thread); ``prepare`` then uses
    the processor's token ids (image placeholders expanded)."""
    if not req.media:
        return
    from .chat_template import render_messages_text
    from .vision_prompt import prepare_vision_prompt

    tools = check_tools(req.tools) if req.tools and req.tool_choice != "none" else None
    kwargs = {**state.settings.default_chat_template_kwargs, **req.chat_template_kwargs}
    text = render_messages_text(state.loaded.tokenizer, req.messages or [], tools=tools, kwargs=kwargs,
                                add_generation_prompt=req.add_generation_prompt,
                                continue_final_message=req.continue_final_message)
    if isinstance(text, list):
        raise APIError(400, "this model has no chat template to place images in", param="messages")
    req.vision = await prepare_vision_prompt(state.loaded.processor, text, req.media, state.settings.media,
                                             req.mm_processor_kwargs,
                                             video=getattr(state.loaded.model, "video", False))


def render_prompt(state: ServerState, req: ChatRequest) -> list[int]:
    """The prompt token ids generation will use (also what token counting reports)."""
    if req.prompt_ids is not None:
        return req.prompt_ids
    if req.vision is not None:
        return req.vision[0]
    tools = check_tools(req.tools) if req.tools and req.tool_choice != "none" else None
    kwargs = {**state.settings.default_chat_template_kwargs, **req.chat_template_kwargs}
    return render_messages(state.loaded.tokenizer, req.messages or [], tools=tools, kwargs=kwargs,
                           add_generation_prompt=req.add_generation_prompt,
                           continue_final_message=req.continue_final_message)


def prepare(state: ServerState, req: ChatRequest) -> "Generation":
    """Check everything that can be checked before generating (4xx errors come from here).
    The route has checked ``model`` (``routes.common.check_model``) first thing."""
    prompt_ids = render_prompt(state, req)
    max_tokens = resolve_max_tokens(req.max_tokens, len(prompt_ids), state.settings.max_model_len, default=None,
                                    clamp=req.clamp_max_tokens)
    plan = plan_output(req) if req.messages is not None else OutputPlan("none")
    params = to_sampling_params(req.sampling, max_tokens=max_tokens, logprobs=req.logprobs,
                                vocab_size=state.engine.engine.vocab_size, defaults=state.settings.sampling_defaults)
    if req.vision is not None:  # blocks of prompts with media are shared only with the same media
        params.cache_salt = salted(params.cache_salt, req.vision[1].content_hash)
    parsers = make_parsers(state, req, prompt_ids, plan) if req.messages is not None else None
    return Generation(state, req, prompt_ids, params, plan, parsers,
                      clamped=req.max_tokens is not None and max_tokens < req.max_tokens)


def make_parsers(state: ServerState, req: ChatRequest, prompt_ids: list[int], plan: OutputPlan):
    """The per-sequence parser factory for ``req`` (None when no parser runs); a 400 when the
    request needs tool calls read and the server reads none."""
    # Under a grammar the reply is constrained from its first token: there is no reasoning block to split.
    reasoning_cls = state.reasoning_parser_cls if plan.schema is None else None
    tool_cls, tool_options = None, {}
    forced = forced_tool_parser(plan)
    if forced is not None:
        tool_cls, tool_options = forced
    elif plan.tool_mode == "auto" and state.settings.tool_call_parser != "none":
        if state.tool_parser_cls is None:
            raise APIError(400, "This server parses no tool calls: start it with --tool-call-parser NAME "
                                "(see `vllm-mlx plugins`)", param="tools")
        tool_cls = state.tool_parser_cls
    if reasoning_cls is None and tool_cls is None:
        return None
    tokenizer = state.engine.tokenizer
    tools = req.tools if tool_cls else None

    def factory(_index: int):
        return (reasoning_cls(tokenizer, prompt_ids, request=req) if reasoning_cls else None,
                tool_cls(tokenizer, tools, request=req, **tool_options) if tool_cls else None)

    return factory


class Generation:
    """One prepared request: its prompt, sampling parameters and, once started, its event stream."""

    def __init__(self, state: ServerState, req: ChatRequest, prompt_ids: list[int], params: SamplingParams,
                 plan: OutputPlan, parsers, clamped: bool):
        self.state, self.req, self.prompt_ids, self.params = state, req, prompt_ids, params
        self.plan, self.parsers, self.clamped = plan, parsers, clamped
        self.rid = new_id(req.id_prefix)
        self.model = req.model or state.settings.served_model_name
        self.completion_tokens = [0] * params.n  # per sequence, as the deltas report them
        self.cached_tokens = 0  # prompt tokens served from the prefix cache
        self._stream: AsyncIterator[SequenceDelta] | None = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def output_tokens(self) -> int:
        return sum(self.completion_tokens)

    async def start(self, check: bool = True) -> "Generation":
        """Reserve room in the queue (429 when full), compile the output grammar, submit."""
        if check:
            check_capacity(self.state, self.params.n)
        self.params.guide = await compile_plan(self.state.engine.grammar, self.plan)
        mm = self.req.vision[1] if self.req.vision is not None else None
        self._stream = self.state.engine.generate(self.prompt_ids, self.params, request_id=self.rid,
                                                  parsers=self.parsers, stream=self.req.stream, mm=mm)
        return self

    async def deltas(self) -> AsyncIterator[SequenceDelta]:
        """The event stream. An engine failure is raised as ``APIError``; closing the
        iterator early (client gone) aborts the generation."""
        assert self._stream is not None, "start() first"
        try:
            async for d in self._stream:
                if d.finish_reason == "error":
                    raise engine_error(d.error)
                self.completion_tokens[d.index] = d.num_tokens
                if d.cached_tokens:
                    self.cached_tokens = max(self.cached_tokens, d.cached_tokens)
                yield d
        finally:
            await self._stream.aclose()

    async def results(self) -> list[SequenceResult]:
        """Every sequence whole (non-streaming replies); raises if any failed."""
        results = [SequenceResult(i) for i in range(self.params.n)]
        assert self._stream is not None, "start() first"
        try:
            async for d in self._stream:
                results[d.index].add(d)
        finally:
            await self._stream.aclose()
        for r in results:
            if r.finish_reason == "error":
                raise engine_error(r.error)
            self.completion_tokens[r.index] = len(r.token_ids)
            self.cached_tokens = max(self.cached_tokens, r.cached_tokens)
        return results

    def outcome(self, finish_reason: str | None, stop_reason: str | int | None, has_calls: bool) -> str:
        """Why a sequence ended, in words every renderer maps to its own: ``tool_calls``,
        ``stop_sequence`` (a stop string matched), ``end`` (end of turn or a stop token),
        ``context_window`` (ran out of context before the requested max_tokens),
        ``length`` (max_tokens) or ``abort``."""
        if finish_reason == "stop":
            if has_calls:
                return "tool_calls"
            return "stop_sequence" if isinstance(stop_reason, str) else "end"
        if finish_reason == "length":
            return "context_window" if self.clamped else "length"
        return finish_reason or "abort"


async def with_heartbeat(stream: AsyncIterator[Any], interval: float) -> AsyncIterator[Any]:
    """Yield ``stream``'s items, and None whenever ``interval`` seconds pass without one
    until the first item arrives (queueing and prefill), so a renderer can keep the
    connection alive. Waiting never cancels the pending read."""
    it = stream.__aiter__()
    pending = asyncio.ensure_future(it.__anext__())
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if done:
                break
            yield None
        try:
            first = pending.result()
        except StopAsyncIteration:
            return
        yield first
        async for item in it:
            yield item
    finally:
        if not pending.done():
            pending.cancel()
            try:
                await pending
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - only making sure it has ended
                pass
        await it.aclose()
