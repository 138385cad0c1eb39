"""POST /v1/chat/completions"""

from __future__ import annotations

from typing import Any, AsyncIterator

from litestar import Request, Response, post
from litestar.response import Stream
import msgspec

from ...core import SamplingParams, SequenceResult
from ...core.output import LogprobEntry, SequenceDelta
from ...core.vision import MultiModalInput, salted
from ..chat_template import render_chat, render_chat_text
from ..errors import APIError, bad_request, log
from ..sampling import resolve_max_tokens, to_sampling_params
from ..schemas.chat import (
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChoiceLogprobs,
    ChunkChoice, Delta, FunctionCallOut, TokenLogprobOut, ToolCallOut, TopLogprob,
)
from ..schemas.common import Usage
from ..state import ServerState
from ..structured import OutputPlan, compile_plan, forced_tool_parser, plan_output
from ..vision_prompt import prepare_vision_prompt
from ..streaming import DONE, SSE_HEADERS, sse, sse_error
from .common import check_capacity, check_model, decode_body, engine_error, new_id, now, server_state, unless_disconnected


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request) -> Any:
    state = server_state(request)
    req = await decode_body(request, ChatCompletionRequest)
    check_model(state, req.model)
    engine = state.engine
    prompt_ids, mm = await render_prompt(state, req)
    requested = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    max_tokens = resolve_max_tokens(requested, len(prompt_ids), state.settings.max_model_len, default=None)
    plan = plan_output(req)
    if req.top_logprobs is not None and not req.logprobs:
        raise bad_request("top_logprobs requires logprobs to be true", param="top_logprobs")
    logprobs = (req.top_logprobs or 0) if req.logprobs else None
    params = to_sampling_params(req, max_tokens=max_tokens, logprobs=logprobs,
                                vocab_size=engine.engine.vocab_size, defaults=state.settings.sampling_defaults)
    if mm is not None:  # blocks of prompts with media are shared only with the same media
        params.cache_salt = salted(params.cache_salt, mm.content_hash)
    parsers = make_parsers(state, req, prompt_ids, plan)
    check_capacity(state, params.n)
    params.guide = await compile_plan(engine.grammar, plan)
    rid = new_id("chatcmpl")
    model = req.model or state.settings.served_model_name
    gen = engine.generate(prompt_ids, params, request_id=rid, parsers=parsers, stream=req.stream, mm=mm)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return Stream(stream_chat(gen, rid, model, params, len(prompt_ids), include_usage),
                      media_type="text/event-stream", headers=SSE_HEADERS)
    return await unless_disconnected(request, complete_chat(gen, rid, model, params, len(prompt_ids)))


async def render_prompt(state: ServerState, req: ChatCompletionRequest) -> tuple[list[int], MultiModalInput | None]:
    """Prompt token ids, and for a vision model's request with images, its vision inputs."""
    tokenizer = state.engine.tokenizer
    kwargs = state.settings.default_chat_template_kwargs
    if req.mm_processor_kwargs is not None and state.loaded.kind != "mllm":
        raise bad_request("mm_processor_kwargs applies to vision models only", param="mm_processor_kwargs")
    if state.loaded.kind != "mllm":
        return render_chat(tokenizer, req, kwargs), None
    media: list = []
    text = render_chat_text(tokenizer, req, kwargs, media)
    if isinstance(text, list):
        return text, None
    if not media:
        return tokenizer.encode(text, add_special_tokens=False), None
    return await prepare_vision_prompt(state.loaded.processor, text, media, state.settings.media,
                                       req.mm_processor_kwargs)


def make_parsers(state: ServerState, req: ChatCompletionRequest, prompt_ids: list[int], plan: OutputPlan):
    # Under a grammar the reply is constrained from its first token: there is no reasoning block to split.
    reasoning_cls = state.reasoning_parser_cls if plan.schema is None else None
    tool_cls, tool_options = None, {}
    forced = forced_tool_parser(plan)
    if forced is not None:
        tool_cls, tool_options = forced
    elif plan.tool_mode == "auto" and state.settings.tool_call_parser != "none":
        if state.tool_parser_cls is None:
            raise bad_request("This server parses no tool calls: start it with --tool-call-parser NAME "
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


def _finish_reason(reason: str | None, has_calls: bool) -> str | None:
    if reason == "stop" and has_calls:
        return "tool_calls"
    return reason


def _tool_calls(calls) -> list[ToolCallOut]:
    return [ToolCallOut(index=i, id=c.id, type="function", function=FunctionCallOut(name=c.name, arguments=c.arguments))
            for i, c in enumerate(calls)]


def _tool_call_deltas(deltas) -> list[ToolCallOut]:
    """Streamed pieces: a call's first piece carries id, type and name; later ones only arguments."""
    return [ToolCallOut(index=d.index, id=d.id, type="function" if d.name is not None else None,
                        function=FunctionCallOut(name=d.name, arguments=d.arguments)) for d in deltas]


def _logprobs(entries: list[LogprobEntry] | None) -> ChoiceLogprobs | None:
    if entries is None:
        return None
    return ChoiceLogprobs(content=[
        TokenLogprobOut(token=e.token, logprob=e.logprob, bytes=list(e.token.encode()),
                        top_logprobs=[TopLogprob(token=t, logprob=lp, bytes=list(t.encode())) for t, lp, _ in e.top])
        for e in entries])


async def complete_chat(gen: AsyncIterator[SequenceDelta], rid: str, model: str, params: SamplingParams,
                        prompt_len: int) -> Response:
    results = [SequenceResult(i) for i in range(params.n)]
    try:
        async for delta in gen:
            results[delta.index].add(delta)
    finally:
        await gen.aclose()
    choices = []
    completion_tokens = 0
    for r in results:
        if r.finish_reason == "error":
            raise engine_error(r.error)
        completion_tokens += len(r.token_ids)
        content = r.text
        if r.tool_calls and not content.strip():
            content = None
        choices.append(ChatChoice(
            index=r.index,
            message=AssistantMessage(content=content, reasoning=r.reasoning or None,
                                     reasoning_content=r.reasoning or None,
                                     tool_calls=_tool_calls(r.tool_calls)),
            logprobs=_logprobs(r.logprobs),
            finish_reason=_finish_reason(r.finish_reason, bool(r.tool_calls)),
            stop_reason=r.stop_reason,
        ))
    body = ChatCompletion(id=rid, created=now(), model=model, choices=choices,
                          usage=Usage.of(prompt_len, completion_tokens, max(r.cached_tokens for r in results)))
    return Response(content=msgspec.json.encode(body), media_type="application/json")


async def stream_chat(gen: AsyncIterator[SequenceDelta], rid: str, model: str, params: SamplingParams,
                      prompt_len: int, include_usage: bool) -> AsyncIterator[bytes]:
    created = now()
    calls_seen = [0] * params.n
    completion_tokens = [0] * params.n
    cached = 0

    def chunk(choice: ChunkChoice) -> bytes:
        return sse(ChatCompletionChunk(id=rid, created=created, model=model, choices=[choice]))

    try:
        for i in range(params.n):
            yield chunk(ChunkChoice(index=i, delta=Delta(role="assistant", content="")))
        async for d in gen:
            if d.finish_reason == "error":
                yield sse_error(engine_error(d.error))
                break
            completion_tokens[d.index] = d.num_tokens
            cached = max(cached, d.cached_tokens or 0)
            delta = Delta()
            if d.text:
                delta.content = d.text
            if d.reasoning:
                delta.reasoning = delta.reasoning_content = d.reasoning
            if d.tool_calls:
                delta.tool_calls = _tool_call_deltas(d.tool_calls)
                calls_seen[d.index] += len(d.tool_calls)
            logprobs = _logprobs(d.logprobs)
            if d.finish_reason is None and delta == Delta() and logprobs is None:
                continue
            yield chunk(ChunkChoice(index=d.index, delta=delta, logprobs=logprobs,
                                    finish_reason=_finish_reason(d.finish_reason, calls_seen[d.index] > 0),
                                    stop_reason=d.stop_reason))
        else:
            if include_usage:
                total = sum(completion_tokens)
                yield sse(ChatCompletionChunk(id=rid, created=created, model=model, choices=[],
                                              usage=Usage.of(prompt_len, total, cached)))
    except APIError as exc:
        yield sse_error(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. a plugin parser failed: tell the client, end cleanly
        log.exception("stream failed")
        yield sse_error(APIError(500, f"generation failed: {type(exc).__name__}: {exc}", type="server_error"))
    finally:
        await gen.aclose()
    yield DONE
