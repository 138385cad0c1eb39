"""Helpers every generation route uses."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Awaitable, TypeVar

import msgspec
from litestar import Request

from ...core import TIMEOUT_PREFIX
from ..errors import APIError, ClientGone, bad_request, from_decode_error
from ..state import ServedModel, ServerState, WrongKind

T = TypeVar("T")
MAX_BODY = 64 * 1024 * 1024


async def decode_body(request: Request, kind: type[T], *, free_form: bool = True) -> T:
    """``free_form=False``: the schema holds no free-form JSON, so its depth is bounded
    and the (per-element) depth walk is skipped; long token-id lists stay cheap."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise APIError(413, "Request body too large")
    if not body.strip():
        raise bad_request("Request body is empty; send a JSON object", code="invalid_json")
    try:
        obj = msgspec.json.decode(body, type=kind)
    except msgspec.MsgspecError as exc:
        raise from_decode_error(exc) from None
    except RecursionError:  # msgspec's decoder gives up on very deep nesting
        raise bad_request(f"JSON is nested more than {MAX_DEPTH} levels deep", code="invalid_json") from None
    if free_form and body.count(b"[") + body.count(b"{") > MAX_DEPTH:  # cheap bound: only then can it be too deep
        check_depth(obj)
    return obj


MAX_DEPTH = 64


def check_depth(obj: object, limit: int = MAX_DEPTH) -> None:
    """Reject free-form JSON (tools, schemas, template arguments) nested deeper than
    ``limit``: the chat template and schema code recurse, and a 5,000-deep object
    would otherwise end in a RecursionError. Iterative, so it cannot recurse itself."""
    stack = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise bad_request(f"JSON is nested more than {limit} levels deep", code="invalid_json")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, msgspec.Struct):
            stack.extend((getattr(item, f), depth + 1) for f in item.__struct_fields__)


def server_state(request: Request) -> ServerState:
    return request.app.state.server


GENERATIVE = ("llm", "mllm")
PRIMARY = ("llm", "mllm", "embedding")


def check_model(state: ServerState, name: str | None, kinds: tuple[str, ...] = PRIMARY) -> ServerState:
    """The named model's own state (its engine, settings, parsers): 404 for a model this server
    does not serve, 400 for a model of another kind (generation routes pass ``GENERATIVE``)."""
    found = served_model(state, name, kinds)
    return found.state if found.state is not None else state


def served_model(state: ServerState, name: str | None, kinds: tuple[str, ...]) -> ServedModel:
    """The served model a request names, if it is of one of ``kinds`` (else a 400 naming its kind)."""
    try:
        found = state.model_for(name, kinds)
    except WrongKind as exc:
        raise bad_request(str(exc), param="model", code="wrong_model_kind") from None
    if found is None:
        if name is None:
            raise bad_request(f"This server serves no {' or '.join(kinds)} model; it serves {state.names()}",
                              param="model", code="model_not_found")
        raise APIError(404, f"The model `{name}` does not exist. This server serves {state.names()} "
                            "(alias `default` for the first).", param="model", code="model_not_found")
    return found


def check_capacity(state: ServerState, sequences: int) -> None:
    """429 with Retry-After once the waiting line is full (running + --max-queue)."""
    s = state.settings
    if state.engine.in_flight + sequences > s.max_num_seqs + s.max_queue:
        raise APIError(429, f"The server is busy: {state.engine.in_flight} sequences are running or waiting "
                            f"(limit {s.max_num_seqs} running + {s.max_queue} waiting). Retry shortly.",
                       code="server_busy", headers={"Retry-After": "1"})


def check_prompt_ids(ids: list[int], vocab_size: int, param: str) -> None:
    if not ids:
        raise bad_request("The prompt is empty", param=param)
    for t in ids:
        if not 0 <= t < vocab_size:
            raise bad_request(f"Token id {t} is outside the vocabulary (0..{vocab_size - 1})", param=param)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def engine_error(message: str | None) -> APIError:
    if message and message.startswith(TIMEOUT_PREFIX):
        return APIError(408, message, type="timeout_error", code="request_timeout")
    return APIError(500, message or "generation failed", type="server_error", code="engine_error")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` but cancel it as soon as the client disconnects, so an
    abandoned non-streaming request stops generating (streaming responses get
    the same from Litestar, which cancels the stream on disconnect)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task in done:
        watcher.cancel()
        return task.result()
    task.cancel()
    raise ClientGone()
