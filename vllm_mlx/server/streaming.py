"""Server-sent events framing."""

from __future__ import annotations

import logging
from typing import AsyncIterator

import msgspec

from .errors import APIError

log = logging.getLogger("vllm_mlx.server")

_encode = msgspec.json.Encoder().encode
DONE = b"data: [DONE]\n\n"


def sse(obj) -> bytes:
    return b"data: " + _encode(obj) + b"\n\n"


def sse_error(err: APIError) -> bytes:
    return sse({"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}})


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def guarded_sse(chunks: AsyncIterator[bytes], events: AsyncIterator) -> AsyncIterator[bytes]:
    """Relay an OpenAI SSE stream: an error mid-stream becomes an error event (the client
    sees why, never a cut connection), the engine's event stream is closed whatever
    happens (which aborts unfinished sequences), and ``data: [DONE]`` ends it."""
    try:
        async for piece in chunks:
            yield piece
    except APIError as exc:
        yield sse_error(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. a plugin parser failed: tell the client, end cleanly
        log.exception("stream failed")
        yield sse_error(APIError(500, f"generation failed: {type(exc).__name__}: {exc}", type="server_error"))
    finally:
        await events.aclose()
    yield DONE
