"""Schemas of the MCP endpoints (/v1/mcp/*) and of the MCP extension fields of chat replies."""

from __future__ import annotations

from typing import Any

import msgspec

from .chat import AssistantMessage, Delta


class DisabledTool(msgspec.Struct, kw_only=True):
    name: str
    reason: str


class McpServerStatus(msgspec.Struct, kw_only=True):
    name: str
    transport: str  # "stdio" or "http"
    status: str  # "connecting", "connected", "failed" (retrying with backoff) or "stopped"
    tools: int  # tools that may be called (after allowed_tools/blocked_tools and disabled ones)
    tools_listed: int  # tools the server lists
    disabled_tools: list[DisabledTool] = []
    last_error: str | None = None
    connected_at: float | None = None
    attempts: int = 0


class McpServerList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[McpServerStatus] = []


class FunctionDef(msgspec.Struct, kw_only=True):
    name: str
    description: str
    parameters: dict[str, Any]


class McpToolOut(msgspec.Struct, kw_only=True):
    """An OpenAI function tool, plus where it comes from."""

    type: str = "function"
    function: FunctionDef
    server_label: str
    tool: str  # the server's own name for it


class McpToolList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[McpToolOut] = []


class McpCallRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str  # the namespaced function name, e.g. "files__read_file"
    arguments: dict[str, Any] | str = {}
    timeout: float | None = None  # seconds; never above the server's call timeout


class McpCallResult(msgspec.Struct, kw_only=True):
    object: str = "mcp.call_result"
    name: str
    server_label: str
    tool: str
    is_error: bool  # the tool ran and reported an error
    output: str  # the text a model would read (after truncation)
    truncated: bool = False
    content: list[dict[str, Any]] = []  # the MCP content blocks (only the truncated text when truncated)
    structured_content: Any = None
    duration_ms: float = 0.0


class McpCall(msgspec.Struct, kw_only=True):
    """One MCP call of a server-side loop (the shape of OpenAI's ``mcp_call`` output item).

    ``status``: "in_progress" (streamed when it starts), "completed" (the tool ran; ``error``
    set if it reported one), "failed" (not run or no answer: ``error`` says why), or
    "not_run" (the loop stopped at a limit before running it)."""

    type: str = "mcp_call"
    id: str
    server_label: str
    name: str  # the server's tool name
    function: str  # the namespaced name the model called
    arguments: str
    status: str
    output: str | None = None
    error: str | None = None
    truncated: bool = False
    duration_ms: float | None = None
    iteration: int = 0


class McpAssistantMessage(AssistantMessage, kw_only=True):
    mcp_calls: list[McpCall] = []


class McpDelta(Delta, kw_only=True, omit_defaults=True):
    mcp_call: McpCall | None = None
