"""API-key check for every /v1 route; /health and /metrics stay open.

The key may come as ``Authorization: Bearer KEY`` (the openai SDK; the anthropic SDK with
``auth_token``; Claude Code with ``ANTHROPIC_AUTH_TOKEN``) or as ``x-api-key: KEY`` (the
anthropic SDK with ``api_key``; Claude Code with ``ANTHROPIC_API_KEY``). A 401 is in the
shape of the API asked (``errors.wants_anthropic``)."""

from __future__ import annotations

import hmac
import uuid

from .errors import APIError, anthropic_error_body, error_body, wants_anthropic

_MESSAGE = "Invalid or missing API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."


def api_key_middleware(api_key: str):
    bearer = f"Bearer {api_key}".encode()
    key = api_key.encode()
    err = APIError(401, _MESSAGE, code="invalid_api_key")
    openai_body = error_body(err)

    def authorized(headers) -> bool:
        ok = False
        for name, value in headers:
            # compare_digest takes the same time wherever the strings differ
            if name == b"authorization":
                ok |= hmac.compare_digest(value, bearer)
            elif name == b"x-api-key":
                ok |= hmac.compare_digest(value, key)
        return ok

    def factory(app):
        async def middleware(scope, receive, send):
            if scope["type"] == "http" and scope["path"].startswith("/v1") and not authorized(scope["headers"]):
                headers = [(b"www-authenticate", b"Bearer")]
                names = {name.decode("latin-1") for name, _ in scope["headers"]}
                if wants_anthropic(scope["path"], names):
                    request_id = f"req_{uuid.uuid4().hex[:24]}"
                    body = anthropic_error_body(err, request_id)
                    headers.append((b"request-id", request_id.encode()))
                else:
                    body = openai_body
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *headers]})
                await send({"type": "http.response.body", "body": body})
                return
            await app(scope, receive, send)

        return middleware

    return factory
