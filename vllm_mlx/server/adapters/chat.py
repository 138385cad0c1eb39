"""OpenAI Chat Completions: request -> ``ChatRequest``; events -> ``chat.completion`` (chunks)."""

from __future__ import annotations

from typing import AsyncIterator

import msgspec
from litestar import Response

from ...core.output import LogprobEntry
from ..chat_template import to_template_messages
from ..errors import bad_request
from ..pipeline import ChatRequest, Generation
from ..schemas.chat import (
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChoiceLogprobs,
    ChunkChoice, Delta, FunctionCallOut, TokenLogprobOut, ToolCallOut, TopLogprob,
)
from ..schemas.common import Usage
from ..streaming import guarded_sse, sse
from ..routes.common import now


def to_chat_request(req: ChatCompletionRequest) -> ChatRequest:
    messages = to_template_messages(req.messages)
    if req.top_logprobs is not None and not req.logprobs:
        raise bad_request("top_logprobs requires logprobs to be true", param="top_logprobs")
    return ChatRequest(
        model=req.model, sampling=req,
        max_tokens=req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens,
        messages=messages, tools=req.tools, tool_choice=req.tool_choice,
        parallel_tool_calls=req.parallel_tool_calls, response_format=req.response_format,
        chat_template_kwargs=dict(req.chat_template_kwargs or {}),
        add_generation_prompt=req.add_generation_prompt, continue_final_message=req.continue_final_message,
        logprobs=(req.top_logprobs or 0) if req.logprobs else None, stream=req.stream, id_prefix="chatcmpl")


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


async def complete_chat(gen: Generation) -> Response:
    results = await gen.results()
    choices = []
    for r in results:
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
    body = ChatCompletion(id=gen.rid, created=now(), model=gen.model, choices=choices,
                          usage=Usage.of(gen.prompt_tokens, gen.output_tokens, gen.cached_tokens))
    return Response(content=msgspec.json.encode(body), media_type="application/json")


async def stream_chat(gen: Generation, include_usage: bool) -> AsyncIterator[bytes]:
    created = now()
    rid, model, n = gen.rid, gen.model, gen.params.n
    calls_seen = [0] * n

    def chunk(choice: ChunkChoice) -> bytes:
        return sse(ChatCompletionChunk(id=rid, created=created, model=model, choices=[choice]))

    events = gen.deltas()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(n):
            yield chunk(ChunkChoice(index=i, delta=Delta(role="assistant", content="")))
        async for d in events:
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
        if include_usage:
            yield sse(ChatCompletionChunk(id=rid, created=created, model=model, choices=[],
                                          usage=Usage.of(gen.prompt_tokens, gen.output_tokens, gen.cached_tokens)))

    async for piece in guarded_sse(chunks(), events):
        yield piece
