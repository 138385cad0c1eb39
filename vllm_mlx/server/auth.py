"""Bearer-token check for every /v1 route; /health and /metrics stay open."""

from __future__ import annotations

import hmac

from .errors import APIError, error_body


def api_key_middleware(api_key: str):
    expected = f"Bearer {api_key}".encode()
    body = error_body(APIError(401, "Invalid or missing API key. Send it as 'Authorization: Bearer <key>'.",
                               code="invalid_api_key"))

    def factory(app):
        async def middleware(scope, receive, send):
            if scope["type"] == "http" and scope["path"].startswith("/v1"):
                given = b""
                for name, value in scope["headers"]:
                    if name == b"authorization":
                        given = value
                        break
                # compare_digest takes the same time wherever the strings differ
                if not hmac.compare_digest(given, expected):
                    await send({"type": "http.response.start", "status": 401, "headers": [
                        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b"Bearer")]})
                    await send({"type": "http.response.body", "body": body})
                    return
            await app(scope, receive, send)

        return middleware

    return factory
