"""What a Responses request with ``{"type": "mcp"}`` tools asks for, checked.

    tools: [{"type": "mcp", "server_label": "files", "allowed_tools": ["read_file"],
             "require_approval": "never"}, ...function tools]

* ``server_label`` names a server of ``--mcp-config``; or, with ``server_url`` (plus optional
  ``headers`` / ``authorization``), a server the request brings, allowed only when its host is
  in ``--mcp-allowed-urls`` (it is connected for this response and closed after it).
* ``allowed_tools``: a list of names or ``{"tool_names", "read_only"}``.
* ``require_approval``: ``"always"`` (OpenAI's default), ``"never"``, or
  ``{"always": {"tool_names", "read_only"}, "never": {...}}``; a tool that matches neither
  filter needs approval.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..server.errors import APIError, bad_request
from .config import SERVER_NAME, McpConfig, ServerConfig, url_allowed
from .host import McpHost
from .tools import HostedTool, _plain


@dataclass
class ServerUse:
    label: str
    host: McpHost
    tools: list[HostedTool]
    listing: list[dict[str, Any]]  # the mcp_list_tools item's tools


@dataclass
class ResponsesMcpPlan:
    servers: list[ServerUse]
    hosted: dict[str, tuple[McpHost, HostedTool, bool]]  # function name -> (host, tool, needs approval)
    function_tools: list[dict[str, Any]]  # Responses' flat function tools (the MCP ones where their entry was)
    max_calls: int | None
    iterations: int
    deadline: float
    owned: list[McpHost] = field(default_factory=list)  # per-request hosts (server_url): stop them after

    def by_label_and_name(self, label: str, name: str) -> str | None:
        return next((fn for fn, (_, t, _) in self.hosted.items() if t.server == label and t.tool == name), None)

    async def close(self) -> None:
        for host in self.owned:
            await host.stop()


def _filter_matches(flt: Any, tool: HostedTool, annotations: dict[str, Any]) -> bool:
    if not isinstance(flt, dict):
        return False
    names, read_only = flt.get("tool_names"), flt.get("read_only")
    if names is None and read_only is None:
        return False
    hint = annotations.get("read_only_hint", annotations.get("readOnlyHint"))
    return (names is None or tool.tool in names) and (read_only is None or bool(hint) == read_only)


def needs_approval(policy: Any, tool: HostedTool, annotations: dict[str, Any]) -> bool:
    if policy in (None, "always"):
        return True
    if policy == "never":
        return False
    if _filter_matches(policy.get("always"), tool, annotations):
        return True
    return not _filter_matches(policy.get("never"), tool, annotations)


def _is_filter(flt: Any) -> bool:
    """``{"tool_names": [str, ...], "read_only": bool}``, both optional."""
    if not isinstance(flt, dict) or set(flt) - {"tool_names", "read_only"}:
        return False
    names, read_only = flt.get("tool_names"), flt.get("read_only")
    return (names is None or isinstance(names, list) and all(isinstance(n, str) for n in names)) and \
        (read_only is None or isinstance(read_only, bool))


def _check_entry(entry: dict, where: str) -> None:
    approval = entry.get("require_approval")
    if approval is not None and approval not in ("always", "never") and not (
            isinstance(approval, dict) and set(approval) <= {"always", "never"}
            and all(v is None or _is_filter(v) for v in approval.values())):
        raise bad_request(f"{where}.require_approval must be 'always', 'never' or "
                          "{'always': {'tool_names': [...], 'read_only': bool}, 'never': {...}}", param="tools")
    allowed = entry.get("allowed_tools")
    if allowed is not None and not _is_filter(allowed) and not (
            isinstance(allowed, list) and all(isinstance(a, str) for a in allowed)):
        raise bad_request(f"{where}.allowed_tools must be a list of tool names or "
                          "{'tool_names': [...], 'read_only': bool}", param="tools")


async def _host_for(state: Any, entry: dict, where: str, owned: list[McpHost]) -> McpHost:
    host: McpHost | None = state.mcp
    label = entry.get("server_label")
    if not isinstance(label, str) or not SERVER_NAME.match(label):
        raise bad_request(f"{where}.server_label {label!r}: expected a name of letters, digits, '_' and '-'",
                          param="tools")
    if entry.get("connector_id") is not None or entry.get("tunnel_id") is not None:
        raise bad_request(f"{where}: connectors and tunnels are not available here; name a configured server or "
                          "a server_url", param="tools")
    url = entry.get("server_url")
    if url is None:
        if host is None:
            raise bad_request("This server has no MCP servers: start it with --mcp-config FILE to use "
                              "{'type': 'mcp'} tools", param="tools", code="mcp_not_configured")
        for key in ("authorization", "headers"):
            if entry.get(key) is not None:
                raise bad_request(f"{where}.{key}: applies to a server_url only; configured servers carry their "
                                  "own headers (--mcp-config)", param="tools")
        if label not in host.servers:
            raise bad_request(f"{where}.server_label {label!r} is not a configured MCP server; configured: "
                              f"{', '.join(sorted(host.servers)) or '(none)'}", param="tools")
        return host
    allowed = host.options.allowed_urls if host is not None else ()
    if not isinstance(url, str) or not url_allowed(url, allowed):
        raise bad_request(f"{where}.server_url: this server reaches only the MCP servers of its config and the "
                          "hosts of --mcp-allowed-urls; this URL's host is not among them", param="tools",
                          code="mcp_server_url_not_allowed")
    if label in host.servers:
        raise bad_request(f"{where}.server_label {label!r} names a configured server: give server_url another "
                          "label", param="tools")
    headers = entry.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in headers.items()):
        raise bad_request(f"{where}.headers must be an object of strings", param="tools")
    auth = entry.get("authorization")
    if auth is not None:
        if not isinstance(auth, str) or not re.fullmatch(r"[\x21-\x7e]+", auth):
            raise bad_request(f"{where}.authorization must be a token", param="tools")
        headers = {**headers, "Authorization": f"Bearer {auth}"}
    own = McpHost(McpConfig(servers={label: ServerConfig(name=label, transport="http", url=url, headers=headers)}),
                  host.options)
    owned.append(own)
    own.start()
    return own


async def plan_response_mcp(state: Any, req: Any) -> ResponsesMcpPlan:
    """Expand the request's MCP entries (connecting any server_url it may name); a 400/424 when it
    cannot run. The caller closes the plan (``close``)."""
    if req.tool_choice not in (None, "auto"):
        raise bad_request("With MCP tools, tool_choice must be 'auto' (the model decides when to call them)",
                          param="tool_choice")
    fmt = req.text.format if req.text else None
    if fmt and fmt.get("type", "text") != "text":
        raise bad_request("text.format cannot be combined with MCP tools", param="text")
    if req.max_tool_calls is not None and req.max_tool_calls < 0:
        raise bad_request("max_tool_calls must be >= 0", param="max_tool_calls")
    owned: list[McpHost] = []
    try:
        return await _plan(state, req, owned)
    except BaseException:
        for host in owned:
            await host.stop()
        raise


async def _plan(state: Any, req: Any, owned: list[McpHost]) -> ResponsesMcpPlan:
    function_tools, client_names, servers, hosted = [], set(), [], {}
    for i, entry in enumerate(req.tools or []):
        if not isinstance(entry, dict) or entry.get("type") != "mcp":
            function_tools.append(entry)
            client_names.add(entry.get("name") if isinstance(entry, dict) else None)
            continue
        where = f"tools[{i}]"
        _check_entry(entry, where)
        host = await _host_for(state, entry, where, owned)
        label = entry["server_label"]
        if any(s.label == label for s in servers):
            raise bad_request(f"{where}.server_label {label!r} appears twice", param="tools")
        conn = host.servers[label]
        await host.wait_ready([label])
        if conn.status != "connected":
            raise APIError(424, f"MCP server {label!r} is not connected ({conn.status}"
                                f"{': ' + conn.last_error if conn.last_error else ''})", param="tools",
                           code="mcp_server_unavailable")
        usable = host.tools(label)
        allowed = entry.get("allowed_tools")
        read_only = allowed.get("read_only") if isinstance(allowed, dict) else None
        names = allowed.get("tool_names") if isinstance(allowed, dict) else allowed
        if names is not None:
            by_tool = {t.tool: t for t in usable}
            missing = [a for a in names if a not in by_tool]
            if missing:
                raise bad_request(f"{where}.allowed_tools: MCP server {label!r} offers no usable tool named "
                                  f"{', '.join(map(repr, missing))}; usable: {', '.join(sorted(by_tool)) or '(none)'}",
                                  param="tools")
            usable = [by_tool[a] for a in names]
        notes = {t.tool: _plain(getattr(conn.tools.get(t.tool), "annotations", None)) or {} for t in usable}
        if read_only is not None:
            usable = [t for t in usable if _filter_matches({"read_only": read_only}, t, notes[t.tool])]
        listing = []
        for t in usable:
            raw = conn.tools.get(t.tool)
            listing.append({"name": t.tool, "description": t.description or None,
                            "input_schema": dict(getattr(raw, "input_schema", None) or t.parameters),
                            "annotations": notes[t.tool] or None})
            if t.name not in hosted:  # the MCP tools in the request's order, where its entry is
                function_tools.append({"type": "function", "name": t.name, "description": t.description,
                                       "parameters": t.parameters})
            hosted[t.name] = (host, t, needs_approval(entry.get("require_approval"), t, notes[t.tool]))
        servers.append(ServerUse(label=label, host=host, tools=usable, listing=listing))
    clash = sorted(n for n in client_names & set(hosted) if n)
    if clash:
        raise bad_request(f"function tool {clash[0]!r} has the name of an MCP tool; rename it", param="tools")
    if not hosted:
        raise bad_request("The MCP tools of this request offer no tool that may be called", param="tools")
    opts = (state.mcp or owned[0]).options
    return ResponsesMcpPlan(servers=servers, hosted=hosted, function_tools=function_tools,
                            max_calls=req.max_tool_calls, iterations=opts.max_tool_iterations,
                            deadline=time.monotonic() + opts.total_timeout, owned=owned)
