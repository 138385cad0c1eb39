"""POST /v1/embeddings"""

from __future__ import annotations

import array
import asyncio
import base64
from typing import Any, Callable, TypeVar

import msgspec
from litestar import Request, Response, post

from ...core.embedding_engine import EmbeddingError
from ..errors import APIError, bad_request
from ..schemas.embeddings import EmbeddingData, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage
from ..state import ServerState
from .common import (
    check_capacity, check_model, check_prompt_ids, decode_body, new_id, now, server_state, unless_disconnected,
)

MAX_INPUTS = 2048  # OpenAI's limit per request
OFF_LOOP_SIZE = 50_000  # characters or token ids to read, or floats to write, beyond which a worker thread does it
T = TypeVar("T")


@post("/v1/embeddings", status_code=200)
async def embeddings(request: Request) -> Response:
    state = server_state(request)
    req = await decode_body(request, EmbeddingRequest, free_form=False)
    state = check_model(state, req.model)
    if state.loaded.kind != "embedding":
        raise bad_request(f"The model `{state.settings.served_model_name}` is a {state.loaded.kind} model and "
                          "makes no embeddings. Serve an embedding model (sentence-transformers metadata), or "
                          "this one with --runner pooling.", param="model", code="model_not_supported")
    dimensions = _dimensions(state, req.dimensions)
    check_capacity(state, 1)
    # tokenizing thousands of strings, or writing millions of floats as JSON, takes long
    # enough to stall other requests: big requests do that work on a worker thread
    inputs = await _maybe_off_loop(_input_size(req.input), _token_inputs, state, req)
    try:
        vectors = await unless_disconnected(request, state.engine.embed(inputs, dimensions))
    except EmbeddingError as exc:
        raise APIError(500, str(exc), type="server_error", code="engine_error") from None
    model = req.model or state.settings.served_model_name
    body = await _maybe_off_loop(sum(len(v) for v in vectors) // 4, _render, req.encoding_format, vectors, inputs,
                                 model)
    return Response(content=body, media_type="application/json")


async def _maybe_off_loop(size: int, fn: Callable[..., T], *args: Any) -> T:
    if size > OFF_LOOP_SIZE:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


def _input_size(raw: str | list) -> int:
    """Characters to tokenize plus token ids to check (O(inputs), not O(tokens))."""
    if isinstance(raw, str) or (raw and isinstance(raw[0], int)):
        return len(raw)
    if len(raw) > MAX_INPUTS:
        return OFF_LOOP_SIZE + 1  # refused, but even counting them is work
    return sum(len(x) if isinstance(x, (str, list)) else 1 for x in raw)


def _render(encoding: str, vectors: list[bytes], inputs: list[list[int]], model: str) -> bytes:
    if encoding == "base64":
        data = [EmbeddingData(index=i, embedding=base64.b64encode(raw).decode()) for i, raw in enumerate(vectors)]
    else:
        data = [EmbeddingData(index=i, embedding=array.array("f", raw).tolist()) for i, raw in enumerate(vectors)]
    tokens = sum(len(ids) for ids in inputs)
    return msgspec.json.encode(EmbeddingResponse(id=new_id("embd"), created=now(), model=model, data=data,
                                                 usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)))


def _token_inputs(state: ServerState, req: EmbeddingRequest) -> list[list[int]]:
    """Token ids per input, truncated when asked and checked against the context."""
    raw = req.input
    if isinstance(raw, str):
        items: list = [raw]
    elif not raw:
        raise bad_request("input must not be empty", param="input")
    elif all(isinstance(x, int) for x in raw):
        items = [raw]
    elif all(isinstance(x, str) for x in raw) or all(isinstance(x, list) for x in raw):
        items = list(raw)
    else:
        raise bad_request("input must be a string, a list of strings, a list of token ids, or a list of token-id "
                          "lists (not a mix)", param="input")
    if len(items) > MAX_INPUTS:
        raise bad_request(f"At most {MAX_INPUTS} inputs per request (got {len(items)})", param="input")
    max_len = state.settings.max_model_len
    keep = _truncation(req.truncate_prompt_tokens, max_len)
    tokenizer, vocab = state.engine.tokenizer, state.engine.engine.vocab_size
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            if tokenizer is None:
                raise bad_request("This model has no tokenizer: send token ids as input", param="input")
            if not item:
                raise bad_request(f"input[{i}] is an empty string", param="input")
            ids = list(tokenizer.encode(item, add_special_tokens=req.add_special_tokens))
            if not ids:
                raise bad_request(f"input[{i}] encodes to no tokens", param="input")
        else:
            if not item:
                raise bad_request(f"input[{i}] is an empty list of token ids", param="input")
            check_prompt_ids(item, vocab or 2**31, "input")  # vocab 0: a plugin model that does not say
            ids = list(item)
        if keep is not None:
            ids = ids[-keep:]
        if len(ids) > max_len:
            raise bad_request(f"This model's maximum context length is {max_len} tokens. However, input[{i}] has "
                              f"{len(ids)} tokens. Shorten it, or set truncate_prompt_tokens (-1: keep the last "
                              f"{max_len}).", param="input", code="context_length_exceeded")
        out.append(ids)
    return out


def _truncation(value: int | None, max_len: int) -> int | None:
    """vLLM's ``truncate_prompt_tokens``: keep an input's last k tokens; -1 means the context size."""
    if value is None:
        return None
    if value == -1:
        return max_len
    if value < 1:
        raise bad_request("truncate_prompt_tokens must be a positive number of tokens, or -1 for the context size",
                          param="truncate_prompt_tokens")
    if value > max_len:
        raise bad_request(f"truncate_prompt_tokens ({value}) is more than this model's maximum context length "
                          f"({max_len})", param="truncate_prompt_tokens")
    return value


def _dimensions(state: ServerState, asked: int | None) -> int | None:
    """The size to truncate vectors to (None: the model's own), or a 400 saying why not."""
    model = state.loaded.model
    full = model.dimensions
    if asked is None or asked == full:
        return None
    if asked < 1:
        raise bad_request("dimensions must be at least 1", param="dimensions")
    if asked > full:
        raise bad_request(f"dimensions ({asked}) is larger than this model's embeddings ({full})",
                          param="dimensions")
    allowed = model.matryoshka
    if not allowed:
        raise bad_request(f"This model was not trained for shortened (Matryoshka) embeddings: dimensions must be "
                          f"left out or {full}", param="dimensions")
    if isinstance(allowed, list) and asked not in allowed:
        raise bad_request(f"dimensions must be one of {sorted(set(allowed) | {full})} for this model",
                          param="dimensions")
    return asked
