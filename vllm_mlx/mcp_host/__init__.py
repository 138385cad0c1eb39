"""MCP host: configured MCP servers and server-side tool-calling loops.

* ``config.py``: the ``mcp.json`` file (Claude Desktop / Cursor format) and the host's limits;
* ``sessions.py``: one server's connection (the official ``mcp`` SDK client), kept up with backoff;
* ``host.py``: every server, their tools under namespaced names, checked and audited calls;
* ``tools.py`` / ``policy.py`` / ``audit.py``: naming and conversion, argument checks, audit lines;
* ``plan.py``: what a chat request with ``{"type": "mcp"}`` tools asks for, checked;
* ``loop.py``: the server-side tool loop of such a request, its reply and its stream;
* ``oneshot.py``: connect, do one thing, disconnect (the ``vllm-mlx mcp`` commands).

Each model turn of a loop is an ordinary engine request (``AsyncEngine.generate``).
"""

from .config import HostOptions, McpConfig, McpConfigError, ServerConfig, load_config, parse_config
from .host import CallOutcome, McpHost

__all__ = ["CallOutcome", "HostOptions", "McpConfig", "McpConfigError", "McpHost", "ServerConfig", "load_config",
           "parse_config"]
