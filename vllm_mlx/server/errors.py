"""Errors are raised once, as ``APIError``, and leave the server in the shape of the API the
client speaks: OpenAI's ``{"error": {"message", "type", "param", "code"}}`` or, on the
Anthropic routes, ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""

from __future__ import annotations

import logging
import re
import uuid

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

log = logging.getLogger("vllm_mlx.server")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable"}


class APIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.headers = headers or {}
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


class ContextLengthError(APIError):
    """The prompt leaves no room in the context window (each API words this its own way)."""

    def __init__(self, message: str, *, prompt_tokens: int, limit: int, param: str | None = None):
        super().__init__(400, message, param=param, code="context_length_exceeded")
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class ClientGone(Exception):
    """The client disconnected before its (non-streaming) reply was ready."""


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def error_body(err: APIError) -> bytes:
    return msgspec.json.encode(
        {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    )


# Anthropic's error.type names (anthropic SDK types/shared/error_type.py), by HTTP status
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
                    408: "timeout_error", 409: "conflict_error", 413: "request_too_large",
                    422: "invalid_request_error", 429: "rate_limit_error", 503: "overloaded_error",
                    529: "overloaded_error"}


def anthropic_message(err: APIError) -> str:
    if isinstance(err, ContextLengthError):
        # Anthropic's own wording: Claude Code's context recovery matches on it
        return f"prompt is too long: {err.prompt_tokens} tokens > {err.limit} maximum"
    return err.message


def anthropic_error(err: APIError) -> dict:
    kind = _ANTHROPIC_TYPES.get(err.status, "api_error" if err.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": anthropic_message(err)}}


def anthropic_error_body(err: APIError, request_id: str) -> bytes:
    return msgspec.json.encode({**anthropic_error(err), "request_id": request_id})


def wants_anthropic(path: str, headers) -> bool:
    """Anthropic's error shape on its routes, and on the shared ``/v1/models`` when the
    client is the anthropic SDK (it always sends ``anthropic-version``; we never require it)."""
    if path.startswith("/v1/messages"):
        return True
    return path.startswith("/v1/models") and "anthropic-version" in headers


def error_response(err: APIError, request: Request | None = None) -> Response:
    if request is not None and wants_anthropic(request.url.path, request.headers):
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        return Response(content=anthropic_error_body(err, request_id), status_code=err.status,
                        media_type="application/json", headers={**err.headers, "request-id": request_id})
    return Response(content=error_body(err), status_code=err.status, media_type="application/json",
                    headers=err.headers)


_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def from_decode_error(exc: msgspec.MsgspecError) -> APIError:
    """Turn a msgspec decode/validation error into a 400 naming the field."""
    text = str(exc)
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return bad_request(f"Request body is not valid JSON: {text}", code="invalid_json")
    match = _AT.search(text)
    param = None
    if match:
        param = re.sub(r"\[\d+\]", "", match.group(1)).split(".")[0] or None
        text = text[: match.start()] + f" at `{match.group(1)}`"
    missing = _MISSING.search(text)
    if param is None and missing:
        param = missing.group(1)
    return bad_request(f"Invalid request: {text}", param=param)


def handle_api_error(request: Request, exc: APIError) -> Response:
    return error_response(exc, request)


def handle_http_exception(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    message = exc.detail or "error"
    if status == 404:
        message = "Not found: no such route"
    return error_response(APIError(status, message), request)


def handle_client_gone(_: Request, exc: ClientGone) -> Response:
    # Nobody reads this; 499 is the conventional "client closed request" code.
    return Response(content=b"", status_code=499)


def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(APIError(500, f"Internal server error: {type(exc).__name__}", type="server_error"), request)


EXCEPTION_HANDLERS = {
    APIError: handle_api_error,
    HTTPException: handle_http_exception,
    ClientGone: handle_client_gone,
    Exception: handle_unexpected,
}
