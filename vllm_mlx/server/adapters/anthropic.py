"""Anthropic Messages rendering: the pipeline's event stream -> a ``message`` body, or its SSE
stream (``message_start``, ``ping``, content blocks, ``message_delta``, ``message_stop``).
Request conversion is in ``anthropic_request.py``."""

from __future__ import annotations

import hashlib
import json
from typing import Any, AsyncIterator

import msgspec
from litestar import Response

from ..errors import APIError, anthropic_error, log
from ..pipeline import Generation, with_heartbeat
from ..schemas import anthropic as A

STOP_REASONS = {"tool_calls": "tool_use", "stop_sequence": "stop_sequence", "end": "end_turn",
                "length": "max_tokens", "context_window": "model_context_window_exceeded", "abort": "end_turn"}


def _message_id(gen: Generation) -> str:
    return "msg_" + gen.rid.split("-", 1)[-1]


def _tool_id(call_id: str | None) -> str:
    """Our call ids look like OpenAI's (``call_...``); Anthropic's start ``toolu_``."""
    call_id = call_id or ""
    return "toolu_" + call_id[5:] if call_id.startswith("call_") else call_id


def _signature(thinking: "hashlib._Hash") -> str:
    """An opaque marker for a thinking block, from the SHA-256 of its text (clients need one; we never
    check it back)."""
    return "vllm-mlx-" + thinking.hexdigest()[:32]


def _tool_input(name: str, arguments: str) -> tuple[dict[str, Any], str | None]:
    """The call's input object, or {} and a note when the model's arguments are not a JSON object."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value, None
    return {}, f"(The model's arguments for {name} were not a JSON object: {arguments})"


def _usage(gen: Generation) -> A.Usage:
    cached = min(gen.cached_tokens, gen.prompt_tokens)
    return A.Usage(input_tokens=gen.prompt_tokens - cached, output_tokens=gen.output_tokens,
                   cache_read_input_tokens=cached)


def _stop(gen: Generation, finish_reason, stop_reason, has_calls: bool) -> A.StopInfo:
    reason = STOP_REASONS.get(gen.outcome(finish_reason, stop_reason, has_calls), "end_turn")
    return A.StopInfo(stop_reason=reason, stop_sequence=stop_reason if reason == "stop_sequence" else None)


async def complete_message(gen: Generation) -> Response:
    r = (await gen.results())[0]
    content: list[Any] = []
    if r.reasoning:
        content.append(A.ThinkingOut(thinking=r.reasoning, signature=_signature(hashlib.sha256(r.reasoning.encode()))))
    # as the stream does: whitespace alone is a text block only when no tool call could follow
    # or when the reply has nothing else
    if r.text.strip() or (r.text and (gen.plan.tool_mode == "none" or not (r.tool_calls or r.reasoning))):
        content.append(A.TextOut(text=r.text))
    for call in r.tool_calls:
        value, note = _tool_input(call.name, call.arguments)
        content.append(A.ToolUseOut(id=_tool_id(call.id), name=call.name, input=value))
        if note:
            content.append(A.TextOut(text=note))
    stop = _stop(gen, r.finish_reason, r.stop_reason, bool(r.tool_calls))
    body = A.Message(id=_message_id(gen), model=gen.model, content=content, stop_reason=stop.stop_reason,
                     stop_sequence=stop.stop_sequence, usage=_usage(gen))
    return Response(content=msgspec.json.encode(body), media_type="application/json")


_encode = msgspec.json.Encoder().encode
PING = b'event: ping\ndata: {"type":"ping"}\n\n'


def event(obj: Any) -> bytes:
    """One SSE frame; the anthropic SDK drops frames without an ``event:`` line."""
    return b"event: " + type(obj).__struct_config__.tag.encode() + b"\ndata: " + _encode(obj) + b"\n\n"


def error_event(err: APIError) -> bytes:
    return b"event: error\ndata: " + _encode(anthropic_error(err)) + b"\n\n"


class _Blocks:
    """Opens and closes content blocks (one at a time, indexes 0, 1, ...) as the events come."""

    def __init__(self, tools: bool):
        self.tools = tools  # a tool call may come: hold leading whitespace (no empty text block before it)
        self.index = -1
        self.kind: str | None = None  # "thinking", "text" or "tool"
        # the open thinking block's running hash (its signature), fed piece by piece: keeping the text
        # and appending to it would copy the whole block on every delta
        self.thinking = hashlib.sha256()
        self.call: tuple[str, str] | None = None  # the open tool block's (name, arguments so far)
        self.pending_space = ""  # whitespace held until real text comes (no empty block before a tool)
        self.any = False

    def open(self, block: Any, kind: str) -> list[bytes]:
        out = self.close()
        self.index += 1
        self.kind, self.any = kind, True
        out.append(event(A.ContentBlockStart(index=self.index, content_block=block)))
        return out

    def close(self) -> list[bytes]:
        if self.kind is None:
            return []
        out = []
        if self.kind == "thinking":
            out.append(event(A.ContentBlockDelta(index=self.index,
                                                 delta=A.SignatureDelta(signature=_signature(self.thinking)))))
            self.thinking = hashlib.sha256()
        note = None
        if self.kind == "tool":
            # The arguments go out whole once the call is complete, and only as a JSON object: the SDK
            # parses every input_json_delta, and a model's malformed arguments would break its stream.
            name, arguments = self.call
            value, note = _tool_input(name, arguments)
            out.append(event(A.ContentBlockDelta(index=self.index,
                                                 delta=A.InputJsonDelta(partial_json=_encode(value).decode()))))
            self.call = None
        out.append(event(A.ContentBlockStop(index=self.index)))
        self.kind = None
        if note:
            out += self.text(note)
            out += self.close()
        return out

    def reasoning(self, text: str) -> list[bytes]:
        out = self.open(A.ThinkingOut(thinking="", signature=""), "thinking") if self.kind != "thinking" else []
        self.thinking.update(text.encode())
        out.append(event(A.ContentBlockDelta(index=self.index, delta=A.ThinkingDelta(thinking=text))))
        return out

    def text(self, text: str) -> list[bytes]:
        if self.kind != "text":
            if self.tools and not text.strip():
                self.pending_space += text
                return []
            text, self.pending_space = self.pending_space + text, ""
            out = self.open(A.TextOut(text=""), "text")
        else:
            out = []
        out.append(event(A.ContentBlockDelta(index=self.index, delta=A.TextDelta(text=text))))
        return out

    def tool_piece(self, piece) -> list[bytes]:
        out = []
        if piece.name is not None:  # a call's first piece
            self.pending_space = ""
            out = self.open(A.ToolUseOut(id=_tool_id(piece.id), name=piece.name, input={}), "tool")
            self.call = (piece.name, "")
        if self.call is not None:
            self.call = (self.call[0], self.call[1] + (piece.arguments or ""))
        return out

    def finish(self) -> list[bytes]:
        if not self.any and self.pending_space:  # a reply of only whitespace is still its text
            space, self.pending_space = self.pending_space, ""
            return self.open(A.TextOut(text=""), "text") + [
                event(A.ContentBlockDelta(index=self.index, delta=A.TextDelta(text=space)))] + self.close()
        return self.close()


async def stream_message(gen: Generation, ping_interval: float) -> AsyncIterator[bytes]:
    """``message_start``, ``ping`` (also every ``ping_interval`` s until the first token), the
    content blocks, ``message_delta`` (stop reason, final usage), ``message_stop``. A failure
    after the start is an ``event: error`` and the stream ends there."""
    start = A.Message(id=_message_id(gen), model=gen.model, content=[],
                      usage=A.Usage(input_tokens=gen.prompt_tokens, output_tokens=0))
    blocks = _Blocks(tools=gen.plan.tool_mode != "none")
    has_calls = False
    events = with_heartbeat(gen.deltas(), ping_interval)
    try:
        yield event(A.MessageStart(message=start))
        yield PING
        async for d in events:
            if d is None:
                yield PING
                continue
            out: list[bytes] = []
            if d.reasoning:
                out += blocks.reasoning(d.reasoning)
            if d.text:
                out += blocks.text(d.text)
            for piece in d.tool_calls:
                has_calls = True
                out += blocks.tool_piece(piece)
            if d.finish_reason is not None:
                out += blocks.finish()
                out.append(event(A.MessageDelta(delta=_stop(gen, d.finish_reason, d.stop_reason, has_calls),
                                                usage=_usage(gen))))
                out.append(event(A.MessageStop()))
            if out:
                yield b"".join(out)
    except APIError as exc:
        yield error_event(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. a plugin parser failed: tell the client, never a fake stop
        log.exception("stream failed")
        yield error_event(APIError(500, f"generation failed: {type(exc).__name__}: {exc}"))
    finally:
        await events.aclose()
