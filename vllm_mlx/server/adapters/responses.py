"""OpenAI Responses rendering: the pipeline's event stream -> a ``response`` object, or its SSE
stream as ``openai``'s ``responses.stream()`` accepts it: ``response.created`` first, then
``response.in_progress``, each output item as ``output_item.added`` ... ``output_item.done``
(message: ``content_part.added``, ``output_text.delta``*, ``output_text.done``,
``content_part.done``; reasoning: the same with ``reasoning_text``; function call:
``function_call_arguments.delta``*, ``.done``), then ``response.completed``,
``response.incomplete`` or ``response.failed`` holding every item with the ids it streamed
under. ``sequence_number`` counts every event from 0. Request conversion is in
``responses_request.py``."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Callable

import msgspec
from litestar import Response

from ..errors import APIError, log
from ..pipeline import Generation
from ..schemas import responses as R
from .responses_request import item_id

INCOMPLETE = {"length", "context_window"}  # outcomes that end a response as incomplete (max_output_tokens)
_encode = msgspec.json.Encoder().encode


def response_id(gen: Generation) -> str:
    return "resp_" + gen.rid.split("-", 1)[-1]


def base_response(gen: Generation, req: R.ResponsesRequest, status: str, created_at: float,
                  output: list | None = None) -> R.ResponseObject:
    return R.ResponseObject(
        id=response_id(gen), created_at=created_at, model=gen.model, status=status, output=output or [],
        instructions=req.instructions, previous_response_id=req.previous_response_id,
        tools=list(req.tools or []), tool_choice=req.tool_choice if req.tool_choice is not None else "auto",
        parallel_tool_calls=req.parallel_tool_calls is not False, temperature=req.temperature, top_p=req.top_p,
        max_output_tokens=req.max_output_tokens, reasoning=req.reasoning,
        text=req.text or R.TextConfig(format={"type": "text"}), store=req.store, metadata=dict(req.metadata or {}),
        max_tool_calls=req.max_tool_calls)


def _usage(gen: Generation, reasoning: str) -> R.Usage:
    cached = min(gen.cached_tokens, gen.prompt_tokens)
    reasoning_tokens = len(gen.state.engine.tokenizer.encode(reasoning, add_special_tokens=False)) if reasoning else 0
    return R.Usage(input_tokens=gen.prompt_tokens, input_tokens_details=R.InputTokensDetails(cached_tokens=cached),
                   output_tokens=gen.output_tokens,
                   output_tokens_details=R.OutputTokensDetails(reasoning_tokens=min(reasoning_tokens, gen.output_tokens)),
                   total_tokens=gen.prompt_tokens + gen.output_tokens)


def _finish(body: R.ResponseObject, outcome: str) -> None:
    if outcome in INCOMPLETE:
        body.status = "incomplete"
        body.incomplete_details = R.IncompleteDetails(reason="max_output_tokens")
    else:
        body.status = "completed"


OnDone = Callable[[R.ResponseObject], None]


async def complete_response(gen: Generation, req: R.ResponsesRequest, on_done: OnDone) -> Response:
    created_at = time.time()
    r = (await gen.results())[0]
    outcome = gen.outcome(r.finish_reason, r.stop_reason, bool(r.tool_calls))
    item_status = "incomplete" if outcome in INCOMPLETE else "completed"
    output: list[Any] = []
    if r.reasoning:
        output.append(R.OutputReasoning(id=item_id("rs"), content=[R.ReasoningText(text=r.reasoning)],
                                        status=item_status))
    # as the stream does: whitespace alone is a message only when no tool call could follow
    # or when the reply has nothing else
    if r.text.strip() or (r.text and (gen.plan.tool_mode == "none" or not (r.tool_calls or r.reasoning))):
        output.append(R.OutputMessage(id=item_id("msg"), content=[R.OutputText(text=r.text)], status=item_status))
    for call in r.tool_calls:
        output.append(R.OutputFunctionCall(id=item_id("fc"), call_id=call.id, name=call.name,
                                           arguments=call.arguments))
    body = base_response(gen, req, "completed", created_at, output)
    _finish(body, outcome)
    body.usage = _usage(gen, r.reasoning)
    on_done(body)
    return Response(content=_encode(body), media_type="application/json")


class _Items:
    """Opens and closes output items (one at a time, output_index 0, 1, ...) as the events come,
    numbering every event."""

    def __init__(self, tools: bool):
        self.tools = tools  # a tool call may come: hold leading whitespace (no empty message before it)
        self.seq = 0
        self.output: list[Any] = []
        self.kind: str | None = None  # "reasoning", "message" or "call" while an item is open
        # the open item's text, reasoning or arguments so far, and all reasoning text (usage counts it), as
        # pieces: joined once, since `str +=` on an attribute copies the whole string for every delta
        self.pieces: list[str] = []
        self.pending_space = ""
        self.reasoning_pieces: list[str] = []

    def event(self, obj: Any) -> bytes:
        obj.sequence_number = self.seq
        self.seq += 1
        return b"event: " + type(obj).__struct_config__.tag.encode() + b"\ndata: " + _encode(obj) + b"\n\n"

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_pieces)

    @property
    def index(self) -> int:
        return len(self.output) - 1

    def open(self, item: Any, kind: str) -> list[bytes]:
        out = self.close()
        self.output.append(item)
        self.kind, self.pieces = kind, []
        out.append(self.event(R.ItemAdded(output_index=self.index, item=item)))
        if kind == "message":
            out.append(self.event(R.PartAdded(item_id=item.id, output_index=self.index, content_index=0,
                                              part=R.OutputText(text=""))))
        elif kind == "reasoning":
            out.append(self.event(R.PartAdded(item_id=item.id, output_index=self.index, content_index=0,
                                              part=R.ReasoningText(text=""))))
        return out

    def close(self, status: str = "completed") -> list[bytes]:
        if self.kind is None:
            return []
        item, i, text = self.output[-1], self.index, "".join(self.pieces)
        out: list[bytes] = []
        if self.kind == "message":
            part = R.OutputText(text=text)
            out.append(self.event(R.TextDone(item_id=item.id, output_index=i, content_index=0, text=text)))
            out.append(self.event(R.PartDone(item_id=item.id, output_index=i, content_index=0, part=part)))
            item.content = [part]
        elif self.kind == "reasoning":
            part = R.ReasoningText(text=text)
            out.append(self.event(R.ReasoningDone(item_id=item.id, output_index=i, content_index=0, text=text)))
            out.append(self.event(R.PartDone(item_id=item.id, output_index=i, content_index=0, part=part)))
            item.content = [part]
        else:
            status = "completed"  # a call is whole once its arguments are
            item.arguments = text
            out.append(self.event(R.ArgumentsDone(item_id=item.id, output_index=i, name=item.name, arguments=text)))
        item.status = status
        out.append(self.event(R.ItemDone(output_index=i, item=item)))
        self.kind = None
        return out

    def add_reasoning(self, text: str) -> list[bytes]:
        out = [] if self.kind == "reasoning" else self.open(
            R.OutputReasoning(id=item_id("rs"), status="in_progress"), "reasoning")
        self.pieces.append(text)
        self.reasoning_pieces.append(text)
        out.append(self.event(R.ReasoningDelta(item_id=self.output[-1].id, output_index=self.index, content_index=0,
                                               delta=text)))
        return out

    def add_text(self, text: str) -> list[bytes]:
        if self.kind != "message":
            if self.tools and not text.strip():
                self.pending_space += text
                return []
            text, self.pending_space = self.pending_space + text, ""
            out = self.open(R.OutputMessage(id=item_id("msg"), status="in_progress"), "message")
        else:
            out = []
        self.pieces.append(text)
        out.append(self.event(R.TextDelta(item_id=self.output[-1].id, output_index=self.index, content_index=0,
                                          delta=text)))
        return out

    def add_call_piece(self, piece) -> list[bytes]:
        out = []
        if piece.name is not None:  # a call's first piece
            self.pending_space = ""
            out = self.open(R.OutputFunctionCall(id=item_id("fc"), call_id=piece.id, name=piece.name, arguments="",
                                                 status="in_progress"), "call")
        if self.kind == "call" and piece.arguments:
            self.pieces.append(piece.arguments)
            out.append(self.event(R.ArgumentsDelta(item_id=self.output[-1].id, output_index=self.index,
                                                   delta=piece.arguments)))
        return out

    def finish(self, status: str) -> list[bytes]:
        if not self.output and self.pending_space:  # a reply of only whitespace is still its text
            space, self.pending_space, tools = self.pending_space, "", self.tools
            self.tools = False
            out = self.add_text(space)
            self.tools = tools
            return out + self.close(status)
        return self.close(status)


async def stream_response(gen: Generation, req: R.ResponsesRequest, on_done: OnDone) -> AsyncIterator[bytes]:
    """The event stream; a failure after ``response.created`` ends it with ``response.failed``."""
    items = _Items(tools=gen.plan.tool_mode != "none")
    created_at = time.time()
    has_calls = False
    events = gen.deltas()
    try:
        yield items.event(R.Created(response=base_response(gen, req, "in_progress", created_at)))
        yield items.event(R.InProgress(response=base_response(gen, req, "in_progress", created_at)))
        async for d in events:
            out: list[bytes] = []
            if d.reasoning:
                out += items.add_reasoning(d.reasoning)
            if d.text:
                out += items.add_text(d.text)
            for piece in d.tool_calls:
                has_calls = True
                out += items.add_call_piece(piece)
            if d.finish_reason is not None:
                outcome = gen.outcome(d.finish_reason, d.stop_reason, has_calls)
                out += items.finish("incomplete" if outcome in INCOMPLETE else "completed")
                body = base_response(gen, req, "completed", created_at, items.output)
                _finish(body, outcome)
                body.usage = _usage(gen, items.reasoning)
                on_done(body)
                out.append(items.event(R.Incomplete(response=body) if body.status == "incomplete"
                                       else R.Completed(response=body)))
            if out:
                yield b"".join(out)
    except Exception as exc:  # noqa: BLE001 - an engine or parser failure: tell the client, never a fake completion
        if not isinstance(exc, APIError):
            log.exception("stream failed")
            exc = APIError(500, f"generation failed: {type(exc).__name__}: {exc}")
        out = items.close("incomplete")
        body = base_response(gen, req, "failed", created_at, items.output)
        body.error = R.ResponseError(code="server_error", message=exc.message)
        body.usage = _usage(gen, items.reasoning)
        out.append(items.event(R.Failed(response=body)))
        yield b"".join(out)
    finally:
        await events.aclose()
