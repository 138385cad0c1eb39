"""Server-sent events framing."""

from __future__ import annotations

import msgspec

from .errors import APIError

_encode = msgspec.json.Encoder().encode
DONE = b"data: [DONE]\n\n"


def sse(obj) -> bytes:
    return b"data: " + _encode(obj) + b"\n\n"


def sse_error(err: APIError) -> bytes:
    return sse({"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}})


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
