"""The MCP config file (Claude Desktop / Cursor ``mcp.json``) and the host's limits.

```json
{"mcpServers": {
  "files":  {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/data"],
             "env": {"TOKEN": "${FILES_TOKEN}"}, "cwd": "/srv", "blocked_tools": ["write_file"]},
  "search": {"url": "http://127.0.0.1:9000/mcp", "headers": {"Authorization": "Bearer ${SEARCH_KEY}"},
             "allowed_tools": ["search"], "call_timeout": 20}}}
```

Every error names the entry and the key at fault. ``${VAR}`` (or ``${env:VAR}``) is replaced
by the environment variable only where it is written; nothing else of our environment
reaches a server.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_VAR = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}")
_STDIO_KEYS = {"command", "args", "env", "cwd"}
_HTTP_KEYS = {"url", "headers"}
_OUR_KEYS = {"allowed_tools", "blocked_tools", "connect_timeout", "call_timeout", "disabled", "type"}
_TYPES = {"stdio": "stdio", "http": "http", "streamable-http": "http", "streamable_http": "http"}


class McpConfigError(ValueError):
    """The config file is unreadable or an entry is invalid; the message names the entry."""


@dataclass(frozen=True)
class ServerConfig:
    name: str
    transport: str  # "stdio" or "http"
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    allowed_tools: frozenset[str] | None = None  # None: every tool the server lists
    blocked_tools: frozenset[str] = frozenset()
    connect_timeout: float | None = None  # None: the host's default
    call_timeout: float | None = None

    def permits(self, tool: str) -> bool:
        return (self.allowed_tools is None or tool in self.allowed_tools) and tool not in self.blocked_tools


@dataclass(frozen=True)
class HostOptions:
    """Limits of the MCP host (``vllm-mlx serve --mcp-*``)."""

    connect_timeout: float = 30.0  # seconds for a server to start and list its tools
    call_timeout: float = 60.0  # seconds per tool call (a server's own call_timeout overrides it)
    total_timeout: float = 300.0  # seconds for a whole server-side loop (all model turns and calls)
    max_tool_iterations: int = 10  # the most rounds of tool calls one request may ask for
    default_tool_iterations: int = 4  # when a request names none (never above max_tool_iterations)
    max_result_bytes: int = 32768  # a tool result longer than this (UTF-8) is truncated
    health_interval: float = 30.0  # seconds between tool re-listings (the health check) of a connected server
    retry_initial: float = 1.0  # first reconnection delay; doubles up to retry_max
    retry_max: float = 60.0
    # hosts a Responses request's own ``server_url`` may name (--mcp-allowed-urls): "host", "host:port"
    # or a URL (its host and port are what count); empty: no request-supplied server is reached
    allowed_urls: tuple[str, ...] = ()


def url_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    """Whether a request-supplied MCP ``server_url`` may be reached: http(s), and its host (and the
    port, where the entry names one) listed in ``allowed``."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    for entry in allowed:
        try:
            want = urlsplit(entry if "://" in entry else f"//{entry}")
            want_host, want_port = (want.hostname or "").lower(), want.port
        except ValueError:
            continue
        if want_host == host and (want_port is None or want_port == port):
            return True
    return False


@dataclass(frozen=True)
class McpConfig:
    servers: dict[str, ServerConfig]
    path: str = ""


def load_config(path: str | os.PathLike, environ: dict[str, str] | None = None) -> McpConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise McpConfigError(f"cannot read MCP config {p}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise McpConfigError(f"MCP config {p} is not valid JSON: {exc}") from None
    return parse_config(data, environ, source=str(p))


def parse_config(data: Any, environ: dict[str, str] | None = None, source: str = "<config>") -> McpConfig:
    environ = os.environ if environ is None else environ
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        raise McpConfigError(f'{source}: expected a JSON object with an "mcpServers" object')
    servers = {}
    for name, entry in data["mcpServers"].items():
        where = f"{source}: mcpServers.{name}"
        if not SERVER_NAME.match(name):
            raise McpConfigError(f"{where}: a server name may use only letters, digits, '_' and '-' (1-40 "
                                 "characters), since it prefixes its tools' function names")
        if not isinstance(entry, dict):
            raise McpConfigError(f"{where}: expected an object with \"command\" or \"url\"")
        if entry.get("disabled") is True:
            continue
        servers[name] = _server(name, entry, environ, where)
    return McpConfig(servers=servers, path=source)


def _server(name: str, entry: dict, environ, where: str) -> ServerConfig:
    unknown = set(entry) - _STDIO_KEYS - _HTTP_KEYS - _OUR_KEYS
    if unknown:
        raise McpConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(sorted(_STDIO_KEYS | _HTTP_KEYS | _OUR_KEYS))}")
    if ("command" in entry) == ("url" in entry):
        raise McpConfigError(f'{where}: give exactly one of "command" (a stdio server) or "url" (streamable HTTP)')
    transport = "stdio" if "command" in entry else "http"
    if "type" in entry and _TYPES.get(entry["type"]) != transport:
        raise McpConfigError(f'{where}.type: {entry["type"]!r} does not match the entry ("{transport}"); '
                             'servers speak stdio ("command") or streamable HTTP ("url"); SSE is not supported')
    if transport == "stdio" and set(entry) & _HTTP_KEYS:
        raise McpConfigError(f'{where}: "headers" belongs to a "url" server, not a "command" one')
    if transport == "http" and set(entry) & (_STDIO_KEYS - {"command"}):
        raise McpConfigError(f'{where}: "args", "env" and "cwd" belong to a "command" server, not a "url" one')

    def text(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise McpConfigError(f"{where}.{key}: expected a string, got {type(value).__name__}")
        return _expand(value, environ, f"{where}.{key}")

    def mapping(key: str) -> dict[str, str]:
        value = entry.get(key, {})
        if not isinstance(value, dict):
            raise McpConfigError(f"{where}.{key}: expected an object of strings")
        return {str(k): text(f"{key}.{k}", v) for k, v in value.items()}

    def names(key: str) -> frozenset[str] | None:
        value = entry.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise McpConfigError(f"{where}.{key}: expected a list of tool names")
        return frozenset(value)

    def seconds(key: str) -> float | None:
        value = entry.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise McpConfigError(f"{where}.{key}: expected a number of seconds > 0")
        return float(value)

    common = dict(name=name, transport=transport, allowed_tools=names("allowed_tools"),
                  blocked_tools=names("blocked_tools") or frozenset(),
                  connect_timeout=seconds("connect_timeout"), call_timeout=seconds("call_timeout"))
    if transport == "stdio":
        command = text("command", entry["command"]).strip()
        if not command:
            raise McpConfigError(f"{where}.command: must not be empty")
        args = entry.get("args", [])
        if not isinstance(args, list):
            raise McpConfigError(f"{where}.args: expected a list of strings")
        cwd = text("cwd", entry["cwd"]) if entry.get("cwd") is not None else None
        return ServerConfig(command=command, args=tuple(text(f"args[{i}]", a) for i, a in enumerate(args)),
                            env=mapping("env"), cwd=cwd, **common)
    url = text("url", entry["url"])
    if not re.match(r"^https?://[^/\s]+", url):
        raise McpConfigError(f"{where}.url: expected an http:// or https:// URL, got {url!r}")
    return ServerConfig(url=url, headers=mapping("headers"), **common)


def _expand(value: str, environ, where: str) -> str:
    def one(match: re.Match) -> str:
        var = match.group(1)
        if var not in environ:
            raise McpConfigError(f"{where}: environment variable {var} is not set")
        return environ[var]

    return _VAR.sub(one, value)
