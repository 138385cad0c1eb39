"""GET /v1/mcp/servers, GET /v1/mcp/tools, POST /v1/mcp/call: the MCP host for clients
that drive their own loop. Behind --api-key like every /v1 route."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post

from ...mcp_host import McpHost
from ..errors import APIError
from ..schemas.mcp import (
    FunctionDef, McpCallRequest, McpCallResult, McpServerList, McpServerStatus, McpToolList, McpToolOut,
)
from .common import decode_body, server_state

# why a call did not run -> (HTTP status, error code)
CALL_ERRORS = {"invalid_arguments": (400, "invalid_arguments"), "not_allowed": (403, "tool_not_allowed"),
               "disabled": (403, "tool_disabled"), "unavailable": (424, "mcp_server_unavailable"),
               "connection_lost": (424, "mcp_connection_lost"), "failed": (424, "mcp_call_failed"),
               "timeout": (504, "mcp_timeout")}


def mcp_host(request: Request) -> McpHost:
    host = server_state(request).mcp
    if host is None:
        raise APIError(404, "No MCP servers are configured: start the server with --mcp-config FILE",
                       code="mcp_not_configured")
    return host


def _json(obj: Any) -> Response:
    return Response(content=msgspec.json.encode(obj), media_type="application/json")


@get("/v1/mcp/servers")
async def mcp_servers(request: Request) -> Response:
    return _json(McpServerList(data=[msgspec.convert(s, McpServerStatus) for s in mcp_host(request).status()]))


@get("/v1/mcp/tools")
async def mcp_tools(request: Request) -> Response:
    tools = mcp_host(request).tools()
    return _json(McpToolList(data=[
        McpToolOut(function=FunctionDef(name=t.name, description=t.description, parameters=t.parameters),
                   server_label=t.server, tool=t.tool) for t in tools]))


@post("/v1/mcp/call", status_code=200)
async def mcp_call(request: Request) -> Response:
    host = mcp_host(request)
    req = await decode_body(request, McpCallRequest)
    if req.timeout is not None and not req.timeout > 0:
        raise APIError(400, "timeout must be a number of seconds > 0", param="timeout")
    hosted = await host.lookup(req.name)
    if hosted is None:
        raise APIError(404, f"No MCP tool named {req.name!r}; GET /v1/mcp/tools lists them", param="name",
                       code="tool_not_found")
    done = await host.call(hosted, req.arguments, timeout=req.timeout)
    if not done.ran:
        status, code = CALL_ERRORS.get(done.outcome, (424, "mcp_call_failed"))
        raise APIError(status, done.error or done.outcome, code=code,
                       param="arguments" if done.outcome == "invalid_arguments" else "name")
    return _json(McpCallResult(name=done.name, server_label=done.server, tool=done.tool,
                               is_error=done.outcome == "tool_error", output=done.output or "",
                               truncated=done.truncated, content=done.content,
                               structured_content=done.structured_content,
                               duration_ms=round(done.duration_s * 1000, 1)))


MCP_ROUTES = [mcp_servers, mcp_tools, mcp_call]
