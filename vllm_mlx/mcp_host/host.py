"""The MCP host: every configured server, their tools under namespaced names, and calls
through the checks (policy, schema, timeout, result size) with an audit line each."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .audit import audit
from .config import HostOptions, McpConfig
from .policy import ToolArgumentsError, check_arguments, parse_arguments
from .sessions import CallFailure, ServerConnection, describe
from .tools import HostedTool, function_name, result_text, truncate


@dataclass
class CallOutcome:
    """What became of one call. ``outcome`` is "ok", "tool_error" (the tool ran and reported
    an error) or why it did not run or did not answer (see ``audit.audit``)."""

    name: str
    server: str
    tool: str
    arguments: str
    outcome: str
    output: str | None = None
    error: str | None = None
    truncated: bool = False
    duration_s: float = 0.0
    content: list[dict[str, Any]] = field(default_factory=list)
    structured_content: Any = None

    @property
    def ran(self) -> bool:
        return self.outcome in ("ok", "tool_error")

    def for_model(self) -> str:
        """The tool message the model reads next."""
        if self.outcome == "ok":
            return self.output or ""
        if self.outcome == "tool_error":
            return f"Error: {self.output or 'the tool reported an error'}"
        return f"Error: {self.error}"


class McpHost:
    def __init__(self, config: McpConfig, options: HostOptions | None = None):
        self.config = config
        self.options = options or HostOptions()
        self.servers = {name: ServerConnection(cfg, self.options) for name, cfg in config.servers.items()}

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Start connecting to every server, concurrently, in the background."""
        for conn in self.servers.values():
            conn.start()

    async def stop(self) -> None:
        await asyncio.gather(*(conn.stop() for conn in self.servers.values()))

    async def wait_ready(self, names: list[str] | None = None, timeout: float | None = None) -> None:
        """Wait until the named servers that are still on their first connection attempt are
        connected or have failed (at most their connect timeout): a request arriving just after
        start-up finds their tools, and one naming a server known to be down fails at once."""
        conns = [self.servers[n] for n in names or self.servers]
        await asyncio.gather(*(c.wait_connected(timeout or c.connect_timeout) for c in conns if c.starting))

    # -- tools --------------------------------------------------------------

    def tools(self, server: str | None = None, *, usable_only: bool = True) -> list[HostedTool]:
        """Tools under the names the model sees, sorted so names are stable. Usable: allowed, not
        disabled, and their server connected (a server being reconnected keeps its last listing)."""
        out, taken = [], set()
        for name in sorted(self.servers):
            conn = self.servers[name]
            for tool_name in sorted(conn.tools):
                tool = conn.tools[tool_name]
                hosted = HostedTool.of(name, tool, function_name(name, tool_name, taken),
                                       conn.fingerprints.get(tool_name, ""))
                taken.add(hosted.name)
                usable = conn.status == "connected" and self.why_unusable(hosted) is None
                if (server is None or server == name) and (usable or not usable_only):
                    out.append(hosted)
        return out

    def find(self, name: str) -> HostedTool | None:
        return next((t for t in self.tools(usable_only=False) if t.name == name), None)

    async def lookup(self, name: str) -> HostedTool | None:
        """``find``, but first wait for a server still starting whose tools could carry this name."""
        hosted = self.find(name)
        if hosted is None:
            starting = [s for s, c in self.servers.items() if c.starting and name.startswith(function_name(s, ""))]
            if starting:
                await self.wait_ready(starting)
                hosted = self.find(name)
        return hosted

    def why_unusable(self, hosted: HostedTool) -> tuple[str, str] | None:
        """(outcome, reason) when policy or a changed definition forbids calling the tool."""
        conn = self.servers[hosted.server]
        if not conn.config.permits(hosted.tool):
            return "not_allowed", f"tool {hosted.tool!r} of MCP server {hosted.server!r} is not allowed by the " \
                                  "server's allowed_tools/blocked_tools"
        if hosted.tool in conn.disabled:
            return "disabled", f"tool {hosted.tool!r} of MCP server {hosted.server!r} is disabled: " \
                               f"{conn.disabled[hosted.tool]}"
        return None

    # -- calls --------------------------------------------------------------

    async def call(self, hosted: HostedTool, arguments: str | dict | None, *, timeout: float | None = None,
                   request_id: str | None = None) -> CallOutcome:
        """Check and run one call. Never raises for a failed call: the outcome says what happened."""
        conn = self.servers[hosted.server]
        args_text = arguments if isinstance(arguments, str) else json.dumps(arguments or {}, ensure_ascii=False)
        result = CallOutcome(name=hosted.name, server=hosted.server, tool=hosted.tool, arguments=args_text,
                             outcome="cancelled")  # what the audit line says if the caller goes away mid-call
        start = time.monotonic()
        try:
            refusal = self.why_unusable(hosted)
            if refusal is not None:
                raise CallFailure(*refusal)
            try:
                args = parse_arguments(arguments)
                check_arguments(args, hosted.parameters)
            except ToolArgumentsError as exc:
                raise CallFailure("invalid_arguments", f"invalid arguments for {hosted.name}: {exc}") from None
            limit = conn.call_timeout if timeout is None else min(timeout, conn.call_timeout)
            answer = await conn.call(hosted.tool, args, limit)
            text, result.truncated = truncate(result_text(answer), self.options.max_result_bytes)
            result.output = text
            result.content = [_block(b) for b in answer.content or []]
            result.structured_content = answer.structured_content
            raw = len(json.dumps([result.content, result.structured_content], ensure_ascii=False,
                                 default=str).encode())
            # the blocks repeat the text (often twice, structured too); beyond that, e.g. an image: cut
            if result.truncated or raw > 2 * self.options.max_result_bytes + 1024:
                result.content, result.structured_content = [{"type": "text", "text": text}], None
                result.truncated = True
            result.outcome = "tool_error" if answer.is_error else "ok"
            await conn.refresh()  # catch a definition changed under us before the next call
        except CallFailure as exc:
            result.outcome, result.error = exc.outcome, exc.message
        except Exception as exc:  # noqa: BLE001 - e.g. a result we cannot read: a failed call, not a 500
            result.outcome, result.error = "failed", f"calling {hosted.name} failed: {describe(exc)}"
        finally:
            result.duration_s = time.monotonic() - start
            audit(server=hosted.server, tool=hosted.tool, outcome=result.outcome, duration_s=result.duration_s,
                  args_bytes=len(args_text.encode()), result_bytes=len((result.output or "").encode()),
                  truncated=result.truncated, request_id=request_id)
        return result

    def status(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self.servers):
            conn = self.servers[name]
            usable = self.tools(name)
            out.append({
                "name": name, "transport": conn.config.transport, "status": conn.status,
                "tools": len(usable), "tools_listed": len(conn.tools),
                "disabled_tools": [{"name": t, "reason": r} for t, r in sorted(conn.disabled.items())],
                "last_error": conn.last_error, "connected_at": conn.connected_at, "attempts": conn.attempts,
            })
        return out


def _block(block: Any) -> dict[str, Any]:
    dump = getattr(block, "model_dump", None)
    return dump(mode="json", by_alias=True, exclude_none=True) if dump else {"type": "unknown"}
