"""Connect, do one thing, disconnect: what the ``vllm-mlx mcp`` commands run."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from .config import HostOptions, load_config
from .host import CallOutcome, McpHost
from .tools import HostedTool


def _host(path: str, timeout: float, only: list[str] | None = None) -> McpHost:
    config = load_config(path)
    if only is not None:
        config = dataclasses.replace(config, servers={n: c for n, c in config.servers.items() if n in only})
    return McpHost(config, HostOptions(connect_timeout=timeout, call_timeout=timeout))


def list_tools(path: str, timeout: float = 30.0) -> tuple[list[dict[str, Any]], list[HostedTool]]:
    """(server status, usable tools) after one connection attempt per server."""
    async def run():
        host = _host(path, timeout)
        host.start()
        try:
            await host.wait_ready()
            return host.status(), host.tools()
        finally:
            await host.stop()

    return asyncio.run(run())


def call_tool(path: str, name: str, arguments: str | dict, timeout: float = 60.0) -> CallOutcome:
    """Call the namespaced tool ``name``, connecting only to its server; ``LookupError`` if there is none."""
    config = load_config(path)
    servers = [s for s in config.servers if name.startswith(f"{s}__")]
    if not servers:
        raise LookupError(f"no server in {path} matches {name!r}: names are SERVER__TOOL, servers: "
                          f"{', '.join(config.servers) or '(none)'}")

    async def run():
        host = _host(path, timeout, only=servers)
        host.start()
        try:
            await host.wait_ready()
            hosted = host.find(name)
            if hosted is None:
                status = "; ".join(f"{s['name']}: {s['status']}" + (f" ({s['last_error']})" if s["last_error"]
                                                                   else "") for s in host.status())
                raise LookupError(f"no tool named {name!r} ({status})")
            return await host.call(hosted, arguments, timeout=timeout)
        finally:
            await host.stop()

    return asyncio.run(run())
