"""Anthropic Messages: request -> ``ChatRequest``; events -> a ``message`` or its SSE stream.

Request conversion (what a chat template understands):

* ``system`` (a string or text blocks) and any ``role: "system"`` messages become one system
  message. A leading ``x-anthropic-billing-header: ...`` line, which Claude Code changes on
  every request, is removed first: left in, it would make every prompt differ from its first
  token and defeat the prefix cache.
* ``tool_result`` blocks become ``tool`` messages (``tool_call_id``, the tool's ``name``,
  ``is_error`` kept), placed before the user text of the same turn so they follow the
  assistant's calls, as chat templates expect.
* ``thinking`` blocks become the assistant's ``reasoning_content`` (their signature is never
  checked); ``redacted_thinking`` blocks are dropped.
* Text blocks of one message are joined with newlines into one string (templates such as
  Qwen3's render only string content).
* ``thinking`` config -> the template's ``enable_thinking`` switch (absent: the template's default).
* ``tool_choice`` auto/any/tool/none -> auto/required/named/none (forced choices run under a
  grammar); ``disable_parallel_tool_use`` -> one call at most.
* ``max_tokens`` beyond the room the context leaves is cut to fit; a reply that then runs out
  of room ends with ``model_context_window_exceeded``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, AsyncIterator

import msgspec
from litestar import Response

from ..errors import APIError, anthropic_error, bad_request, log
from ..pipeline import ChatRequest, Generation, with_heartbeat
from ..schemas import anthropic as A
from ..schemas.common import SamplingFields

BILLING_HEADER = "x-anthropic-billing-header:"
STOP_REASONS = {"tool_calls": "tool_use", "stop_sequence": "stop_sequence", "end": "end_turn",
                "length": "max_tokens", "context_window": "model_context_window_exceeded", "abort": "end_turn"}
THINKING_ON = {"enabled": True, "adaptive": True, "between_tools": True, "disabled": False}


# -- request --------------------------------------------------------------------------


def _strip_billing_header(text: str) -> str:
    if not text.lstrip().lower().startswith(BILLING_HEADER):
        return text
    _, _, rest = text.lstrip().partition("\n")
    return rest.lstrip("\n")


def _system_text(system: str | list[A.TextBlock] | None) -> list[str]:
    if system is None:
        return []
    parts = [system] if isinstance(system, str) else [b.text for b in system]
    return [t for t in (_strip_billing_header(p) for p in parts) if t]


def _document_text(block: A.DocumentBlock, where: str) -> str:
    source = block.source
    kind = source.get("type")
    if kind == "text" and isinstance(source.get("data"), str):
        return source["data"]
    if kind == "content":
        content = source.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list) and all(isinstance(c, dict) and c.get("type") == "text" for c in content):
            return "\n".join(str(c.get("text", "")) for c in content)
    raise bad_request(f"{where}: document source {kind!r} is not supported; this server reads plain-text "
                      "documents (source type 'text' or 'content' with text blocks)", param="messages")


def _no_images(where: str) -> APIError:
    return bad_request(f"{where}: image blocks need a vision model; this model reads text only", param="messages")


def _tool_result_text(block: A.ToolResultBlock, where: str) -> str:
    content = block.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if isinstance(part, A.TextBlock):
            texts.append(part.text)
        elif isinstance(part, A.ToolReferenceBlock):
            texts.append(part.tool_name)
        elif isinstance(part, A.DocumentBlock):
            texts.append(_document_text(part, f"{where}.content[{j}]"))
        else:
            raise _no_images(f"{where}.content[{j}]")
    return "\n".join(texts)


def _user_turn(blocks: list, i: int, tool_names: dict[str, str]) -> list[dict[str, Any]]:
    tools, texts = [], []
    for j, b in enumerate(blocks):
        where = f"messages[{i}].content[{j}]"
        if isinstance(b, A.TextBlock):
            texts.append(b.text)
        elif isinstance(b, A.ToolResultBlock):
            msg = {"role": "tool", "tool_call_id": b.tool_use_id, "content": _tool_result_text(b, where)}
            if b.tool_use_id in tool_names:
                msg["name"] = tool_names[b.tool_use_id]
            if b.is_error:
                msg["is_error"] = True
            tools.append(msg)
        elif isinstance(b, A.DocumentBlock):
            texts.append(_document_text(b, where))
        elif isinstance(b, A.ImageBlock):
            raise _no_images(where)
        else:
            raise bad_request(f"{where}: a user message cannot hold a {type(b).__struct_config__.tag!r} block",
                              param="messages")
    return tools + ([{"role": "user", "content": "\n".join(texts)}] if texts or not tools else [])


def _assistant_turn(blocks: list, i: int, tool_names: dict[str, str]) -> dict[str, Any]:
    texts, reasoning, calls = [], [], []
    for j, b in enumerate(blocks):
        if isinstance(b, A.TextBlock):
            texts.append(b.text)
        elif isinstance(b, A.ThinkingBlock):
            reasoning.append(b.thinking)
        elif isinstance(b, A.RedactedThinkingBlock):
            continue
        elif isinstance(b, A.ToolUseBlock):
            tool_names[b.id] = b.name
            calls.append({"id": b.id, "type": "function", "function": {"name": b.name, "arguments": b.input}})
        else:
            raise bad_request(f"messages[{i}].content[{j}]: an assistant message cannot hold a "
                              f"{type(b).__struct_config__.tag!r} block", param="messages")
    msg: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts)}
    if calls:
        msg["tool_calls"] = calls
    if reasoning:
        msg["reasoning_content"] = "\n".join(reasoning)
    return msg


def _messages(req: A.CountTokensRequest) -> list[dict[str, Any]]:
    if not req.messages:
        raise bad_request("messages: at least one message is required", param="messages")
    system = _system_text(req.system)
    out: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}
    for i, m in enumerate(req.messages):
        if m.role == "system":
            parts = [m.content] if isinstance(m.content, str) else \
                [b.text for b in m.content if isinstance(b, A.TextBlock)]
            system.extend(t for t in (_strip_billing_header(p) for p in parts) if t)
        elif m.role not in ("user", "assistant"):
            raise bad_request(f"messages[{i}].role: {m.role!r} is not 'user' or 'assistant'", param="messages")
        elif isinstance(m.content, str):
            out.append({"role": m.role, "content": m.content})
        elif m.role == "user":
            out.extend(_user_turn(m.content, i, tool_names))
        else:
            out.append(_assistant_turn(m.content, i, tool_names))
    if not out:
        raise bad_request("messages: at least one user or assistant message is required", param="messages")
    return ([{"role": "system", "content": "\n".join(system)}] if system else []) + out


def _tools(tools: list[A.ToolParam] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for i, t in enumerate(tools):
        if t.type not in (None, "custom"):
            raise bad_request(f"tools[{i}]: server tool type {t.type!r} is not supported; this server runs "
                              "client tools only ({name, description, input_schema})", param="tools")
        fn: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            fn["description"] = t.description
        fn["parameters"] = t.input_schema if t.input_schema is not None else {"type": "object"}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: A.ToolChoice | None, tools: list | None) -> tuple[str | dict | None, bool | None]:
    if choice is None:
        return None, None
    parallel = None if choice.disable_parallel_tool_use is None else not choice.disable_parallel_tool_use
    if choice.type in ("any", "tool") and not tools:
        raise bad_request(f"tool_choice {choice.type!r} needs tools", param="tool_choice")
    if choice.type == "auto":
        return "auto", parallel
    if choice.type == "none":
        return "none", parallel
    if choice.type == "any":
        return "required", parallel
    if choice.type == "tool":
        if not choice.name:
            raise bad_request("tool_choice of type 'tool' needs a name", param="tool_choice")
        return {"type": "function", "function": {"name": choice.name}}, parallel
    raise bad_request(f"tool_choice.type must be 'auto', 'any', 'tool' or 'none', got {choice.type!r}",
                      param="tool_choice")


def _response_format(config: A.OutputConfig | None) -> dict[str, Any] | None:
    fmt = config.format if config else None
    if not fmt:
        return None
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise bad_request("output_config.format must be {'type': 'json_schema', 'schema': {...}}",
                          param="output_config")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}


def to_chat_request(req: A.CountTokensRequest) -> ChatRequest:
    """Works for both ``MessagesRequest`` and ``CountTokensRequest`` (same prompt either way)."""
    messages = _messages(req)
    tools = _tools(req.tools)
    tool_choice, parallel = _tool_choice(req.tool_choice, tools)
    kwargs: dict[str, Any] = {}
    if req.thinking is not None:
        if req.thinking.type not in THINKING_ON:
            raise bad_request("thinking.type must be 'enabled', 'adaptive', 'between_tools' or 'disabled'",
                              param="thinking")
        kwargs["enable_thinking"] = THINKING_ON[req.thinking.type]
    prefill = messages[-1]["role"] == "assistant" and not messages[-1].get("tool_calls")
    stop = getattr(req, "stop_sequences", None)
    sampling = SamplingFields(model=req.model, temperature=getattr(req, "temperature", None),
                              top_p=getattr(req, "top_p", None), top_k=getattr(req, "top_k", None),
                              stop=list(stop) if stop else None, stream=getattr(req, "stream", False),
                              ignore_eos=getattr(req, "ignore_eos", False))
    return ChatRequest(
        model=req.model, sampling=sampling, max_tokens=getattr(req, "max_tokens", None), messages=messages,
        tools=tools, tool_choice=tool_choice, parallel_tool_calls=parallel,
        response_format=_response_format(req.output_config), chat_template_kwargs=kwargs,
        add_generation_prompt=not prefill, continue_final_message=prefill,
        stream=sampling.stream, clamp_max_tokens=True, id_prefix="msg")


# -- response -------------------------------------------------------------------------


def _message_id(gen: Generation) -> str:
    return "msg_" + gen.rid.split("-", 1)[-1]


def _tool_id(call_id: str | None) -> str:
    """Our call ids look like OpenAI's (``call_...``); Anthropic's start ``toolu_``."""
    call_id = call_id or ""
    return "toolu_" + call_id[5:] if call_id.startswith("call_") else call_id


def _signature(thinking: str) -> str:
    """An opaque marker for a thinking block (clients need one; we never check it back)."""
    return "vllm-mlx-" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


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
    reason = STOP_REASONS[gen.outcome(finish_reason, stop_reason, has_calls)]
    return A.StopInfo(stop_reason=reason, stop_sequence=stop_reason if reason == "stop_sequence" else None)


async def complete_message(gen: Generation) -> Response:
    r = (await gen.results())[0]
    content: list[Any] = []
    if r.reasoning:
        content.append(A.ThinkingOut(thinking=r.reasoning, signature=_signature(r.reasoning)))
    if r.text.strip() or (r.text and not r.tool_calls and not r.reasoning):
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

    def __init__(self):
        self.index = -1
        self.kind: str | None = None  # "thinking", "text" or "tool"
        self.thinking = ""  # the open thinking block's text (its signature is a hash of it)
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
            self.thinking = ""
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
        self.thinking += text
        out.append(event(A.ContentBlockDelta(index=self.index, delta=A.ThinkingDelta(thinking=text))))
        return out

    def text(self, text: str) -> list[bytes]:
        if self.kind != "text":
            if not text.strip():
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
    blocks = _Blocks()
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
