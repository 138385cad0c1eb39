"""The server-side tool loop of a chat completion that lists MCP tools.

A request opts in the way OpenAI's API names remote MCP tools, but may only name servers
from the config (a request can never add a command or a URL):

    tools: [{"type": "mcp", "server_label": "files", "allowed_tools": ["read_file"]}, ...function tools]
    max_tool_iterations: 3        # rounds of MCP calls; default 4, capped by --mcp-max-tool-iterations

Each model turn is an ordinary engine request (other users keep being served); the MCP
calls of a turn run one after another through ``McpHost.call`` (checks, timeout, audit),
their results become tool messages, and the model goes again, until it answers without
an MCP call. Calls of the client's own function tools end the loop and come back as usual
(``finish_reason: "tool_calls"``). The calls made are returned in ``message.mcp_calls`` and,
when streaming, as ``delta.mcp_call`` events while they happen (see docs/guides/mcp.md).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import msgspec
from litestar import Request, Response
from litestar.response import Stream

from ..core import SequenceResult
from ..plugins.interfaces import ToolCall
from ..server.errors import APIError, log
from ..server.routes.common import check_capacity, engine_error, new_id, now, unless_disconnected
from ..server.sampling import to_sampling_params
from ..server.schemas.chat import (
    ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage, ChunkChoice, FunctionCall,
    FunctionCallOut, ToolCallIn, ToolCallOut,
)
from ..server.schemas.common import Usage
from ..server.schemas.mcp import McpAssistantMessage, McpCall, McpDelta
from ..server.streaming import DONE, SSE_HEADERS, sse, sse_error
from .host import CallOutcome
from .plan import LoopPlan, first_turn, plan_loop, turn_request


@dataclass
class Final:
    content: str = ""
    reasoning: str = ""
    client_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    stop_reason: str | int | None = None
    calls: list[McpCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


async def mcp_chat(request: Request, state: Any, req: ChatCompletionRequest) -> Any:
    """The chat route hands a request with ``{"type": "mcp"}`` tools over to here."""
    plan = await plan_loop(state, req)
    rid = new_id("chatcmpl")
    model = req.model or state.settings.served_model_name
    check_capacity(state, 1)
    first = await first_turn(state, plan)  # a prompt or max_tokens that cannot fit: 400 before anything runs
    loop = ToolLoop(state, plan, rid, stream=req.stream, first=first)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return Stream(stream_loop(loop, rid, model, include_usage), media_type="text/event-stream",
                      headers=SSE_HEADERS)
    return await unless_disconnected(request, complete_loop(loop, rid, model))


class ToolLoop:
    """Runs the turns; ``events()`` yields ("text", content, reasoning), ("call", McpCall) (once when a
    call starts, once when it ends) and finally ("final", Final)."""

    def __init__(self, state: Any, plan: LoopPlan, rid: str, *, stream: bool, first: Any):
        self.state, self.plan, self.rid, self.stream = state, plan, rid, stream
        self.first = first  # the first turn's pipeline.ChatRequest

    async def events(self) -> AsyncIterator[tuple]:
        from ..core.vision import salted  # here: the chat route imports this module lazily
        from ..server.pipeline import make_parsers, render_prompt
        from ..server.structured import plan_output

        state, plan, req = self.state, self.plan, self.plan.request
        engine, host = state.engine, state.mcp
        messages = list(req.messages)
        final = Final()
        requested = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        for turn in range(plan.iterations + 1):
            if turn and time.monotonic() >= plan.deadline:  # results are in, but no time for another turn
                final.finish_reason, final.stop_reason = "length", "mcp_total_timeout"
                break
            turn_req = msgspec.structs.replace(req, messages=messages)
            # a vision model's images are processed again each turn (the encoder cache spares re-encoding)
            chat_req = self.first if turn == 0 else await turn_request(state, turn_req)
            prompt = render_prompt(state, chat_req)
            room = state.settings.max_model_len - len(prompt)
            if room < 1:  # the conversation outgrew the context: stop here
                final.finish_reason, final.stop_reason = "length", "context_length"
                break
            params = to_sampling_params(turn_req, max_tokens=min(requested or room, room), logprobs=None,
                                        vocab_size=engine.engine.vocab_size,
                                        defaults=state.settings.sampling_defaults)
            mm = chat_req.vision[1] if chat_req.vision is not None else None
            if mm is not None:  # blocks of prompts with media are shared only with the same media
                params.cache_salt = salted(params.cache_salt, mm.content_hash)
            parsers = make_parsers(state, chat_req, prompt, plan_output(chat_req))
            result = SequenceResult(0)
            gen = engine.generate(prompt, params, request_id=f"{self.rid}-turn{turn}", parsers=parsers,
                                  stream=self.stream, mm=mm)
            try:
                async for delta in gen:
                    result.add(delta)
                    if self.stream and (delta.text or delta.reasoning):
                        yield "text", delta.text, delta.reasoning
            finally:
                await gen.aclose()
            if result.finish_reason == "error":
                raise engine_error(result.error)
            final.prompt_tokens += len(prompt)
            final.completion_tokens += len(result.token_ids)
            final.cached_tokens += result.cached_tokens
            final.content, final.reasoning = result.text, result.reasoning
            final.finish_reason, final.stop_reason = result.finish_reason or "stop", result.stop_reason
            mcp_calls = [c for c in result.tool_calls if c.name in plan.hosted]
            final.client_calls = [c for c in result.tool_calls if c.name not in plan.hosted]
            if final.client_calls:
                final.finish_reason = "tool_calls"
            if not mcp_calls:
                break
            results, limit = [], "max_tool_iterations" if turn >= plan.iterations else None
            for call in mcp_calls:
                if limit is None and time.monotonic() >= plan.deadline:
                    limit = "mcp_total_timeout"
                if limit is not None:
                    record = self._record(call, turn, "not_run")
                    record.error = f"not run: the loop reached its {limit} limit"
                    final.calls.append(record)
                    yield "call", record
                    continue
                record = self._record(call, turn, "in_progress")
                yield "call", record
                timeout = max(0.1, plan.deadline - time.monotonic())
                done = await host.call(plan.hosted[call.name], call.arguments, timeout=timeout, request_id=self.rid)
                record = self._finished(record, done)
                final.calls.append(record)
                results.append((call, done))
                yield "call", record
            if limit is not None:
                if not final.client_calls:
                    final.finish_reason, final.stop_reason = "length", limit
                break
            if final.client_calls:  # the client runs its own calls; the MCP results of this turn are reported
                break
            messages = messages + _turn_messages(result.text, results)
        yield "final", final

    def _record(self, call: ToolCall, turn: int, status: str) -> McpCall:
        hosted = self.plan.hosted[call.name]
        return McpCall(id=call.id or f"mcp_{uuid.uuid4().hex[:24]}", server_label=hosted.server, name=hosted.tool,
                       function=call.name, arguments=call.arguments, status=status, iteration=turn + 1)

    @staticmethod
    def _finished(record: McpCall, done: CallOutcome) -> McpCall:
        return msgspec.structs.replace(
            record, status="completed" if done.ran else "failed", output=done.output,
            error=done.error if not done.ran else (done.output if done.outcome == "tool_error" else None),
            truncated=done.truncated, duration_ms=round(done.duration_s * 1000, 1))


def _turn_messages(text: str, results: list[tuple[ToolCall, CallOutcome]]) -> list[ChatMessage]:
    """The assistant turn with its MCP calls, then one tool message per result."""
    calls = [ToolCallIn(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments)) for c, _ in results]
    out = [ChatMessage(role="assistant", content=text.strip() or None, tool_calls=calls)]
    out += [ChatMessage(role="tool", tool_call_id=c.id, content=done.for_model()) for c, done in results]
    return out


def _client_calls(calls: list[ToolCall]) -> list[ToolCallOut]:
    return [ToolCallOut(index=i, id=c.id, type="function", function=FunctionCallOut(name=c.name, arguments=c.arguments))
            for i, c in enumerate(calls)]


def _usage(final: Final) -> Usage:
    return Usage.of(final.prompt_tokens, final.completion_tokens, final.cached_tokens)


async def complete_loop(loop: ToolLoop, rid: str, model: str) -> Response:
    final = Final()
    async for kind, *payload in loop.events():
        if kind == "final":
            final = payload[0]
    content = final.content if final.content.strip() or not final.client_calls else None
    message = McpAssistantMessage(content=content, reasoning=final.reasoning or None,
                                  reasoning_content=final.reasoning or None,
                                  tool_calls=_client_calls(final.client_calls), mcp_calls=final.calls)
    body = ChatCompletion(id=rid, created=now(), model=model, usage=_usage(final), choices=[
        ChatChoice(index=0, message=message, finish_reason=final.finish_reason, stop_reason=final.stop_reason)])
    return Response(content=msgspec.json.encode(body), media_type="application/json")


async def stream_loop(loop: ToolLoop, rid: str, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    created = now()

    def chunk(delta: McpDelta, **kw) -> bytes:
        return sse(ChatCompletionChunk(id=rid, created=created, model=model,
                                       choices=[ChunkChoice(index=0, delta=delta, **kw)]))

    events = loop.events()
    try:
        yield chunk(McpDelta(role="assistant", content=""))
        async for kind, *payload in events:
            if kind == "text":
                text, reasoning = payload
                delta = McpDelta(content=text or None)
                if reasoning:
                    delta.reasoning = delta.reasoning_content = reasoning
                yield chunk(delta)
            elif kind == "call":
                yield chunk(McpDelta(mcp_call=payload[0]))
            else:
                final: Final = payload[0]
                if final.client_calls:
                    yield chunk(McpDelta(tool_calls=_client_calls(final.client_calls)))
                yield chunk(McpDelta(), finish_reason=final.finish_reason, stop_reason=final.stop_reason)
                if include_usage:
                    yield sse(ChatCompletionChunk(id=rid, created=created, model=model, choices=[],
                                                  usage=_usage(final)))
    except APIError as exc:
        yield sse_error(exc)
    except Exception as exc:  # noqa: BLE001 - tell the client, end the stream cleanly
        log.exception("MCP tool loop failed")
        yield sse_error(APIError(500, f"MCP tool loop failed: {type(exc).__name__}: {exc}", type="server_error"))
    finally:
        await events.aclose()
    yield DONE
