"""One configured MCP server: its connection, kept up with backoff, and its tool listing.

The connection is the official SDK's ``mcp.Client`` (stdio: ``StdioServerParameters``, run
directly, never through a shell; streamable HTTP: ``streamable_http_client`` over an
``httpx2`` client carrying the configured headers). Each server has one supervisor task
that owns the client context from entry to exit (anyio needs that), so a server that
fails to start or dies later is retried in the background and never blocks the model
server. Tool definitions are fingerprinted the first time they are seen; one whose
description or schema changes later is disabled until restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio

from .config import HostOptions, ServerConfig
from .tools import fingerprint

log = logging.getLogger("vllm_mlx.mcp")

try:
    _Group = BaseExceptionGroup
except NameError:  # Python 3.10: anyio's backport
    from exceptiongroup import BaseExceptionGroup as _Group

_PAGE_CAP = 100  # tools/list pages read at most (a server that never stops paging cannot hang us)


class CallFailure(Exception):
    """A call that did not produce a result; ``outcome`` is its audit category."""

    def __init__(self, outcome: str, message: str):
        super().__init__(message)
        self.outcome = outcome
        self.message = message


def describe(exc: BaseException) -> str:
    """A short reason for a failure, from the first leaf of an exception group."""
    while isinstance(exc, _Group) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ServerConnection:
    def __init__(self, config: ServerConfig, options: HostOptions):
        self.config = config
        self.options = options
        self.name = config.name
        self.status = "stopped"  # connecting | connected | failed | stopped
        self.last_error: str | None = None
        self.connected_at: float | None = None
        self.attempts = 0
        self.tools: dict[str, Any] = {}  # the server's current listing: tool name -> mcp Tool
        self.fingerprints: dict[str, str] = {}  # first seen, kept across reconnects (until restart)
        self.disabled: dict[str, str] = {}  # tool name -> why
        self._client: Any = None
        self._task: asyncio.Task | None = None
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._stopping = False
        self._listing = asyncio.Lock()
        self._up_since: float | None = None  # time.monotonic() of the last successful connection

    @property
    def connect_timeout(self) -> float:
        return self.config.connect_timeout or self.options.connect_timeout

    @property
    def call_timeout(self) -> float:
        return self.config.call_timeout or self.options.call_timeout

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._supervise(), name=f"mcp-server-{self.name}")

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # the SDK closes stdin, waits, then kills the child's process group (all bounded)
            await asyncio.wait({task}, timeout=timeout)
        self.status = "stopped"

    @property
    def starting(self) -> bool:
        """On its first connection attempt (not yet connected, not yet failed)."""
        return self._task is not None and self.attempts <= 1 and self.status in ("stopped", "connecting")

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until connected, or until the first attempt failed, or ``timeout``."""
        if self._client is not None:
            return True
        deadline = time.monotonic() + timeout
        while self._client is None and self.starting and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self._connected.wait(), min(0.25, max(0.0, deadline - time.monotonic())))
            except asyncio.TimeoutError:  # (TimeoutError itself from 3.11 on)
                pass
        return self._client is not None

    async def _supervise(self) -> None:
        delay = self.options.retry_initial
        while not self._stopping:
            self.attempts += 1
            self.status = "connecting"
            began = time.monotonic()
            try:
                await self._connection()
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - anything from the transport (groups too): report, retry
                self.last_error = self._describe_start_failure(exc)
            finally:
                self._forget()
            if self._stopping:
                return
            self.status = "failed"
            if self._up_since is not None and self._up_since >= began and time.monotonic() - self._up_since > 60:
                delay = self.options.retry_initial  # it ran a good while: start the backoff over
            log.warning("MCP server %r is unavailable (%s); retrying in %.1fs", self.name, self.last_error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.retry_max)

    def _describe_start_failure(self, exc: BaseException) -> str:
        leaf = exc
        while isinstance(leaf, _Group) and leaf.exceptions:
            leaf = leaf.exceptions[0]
        if self.config.transport == "stdio" and isinstance(leaf, OSError) and self._client is None:
            # uvloop's spawn errors do not name the file
            return f"cannot start {self.config.command!r}: {leaf.strerror or leaf}"
        return describe(exc)

    def _forget(self) -> None:
        """The connection is gone (or going): no new call may use it."""
        self._client = None
        self._connected.clear()
        if self.status == "connected":
            self.status = "failed"

    async def _connection(self) -> None:
        """Connect, list tools, then watch the server until it is lost (returns) or stopped (cancelled)."""
        from mcp import Client
        from mcp.types import Implementation

        from .. import __version__

        loop = asyncio.get_running_loop()
        with anyio.CancelScope() as scope:
            timer = loop.call_later(self.connect_timeout, scope.cancel)
            try:
                async with AsyncExitStack() as stack:
                    client = Client(await self._target(stack), cache=None,
                                    client_info=Implementation(name="vllm-mlx", version=__version__))
                    await stack.enter_async_context(client)
                    await self._relist(client)
                    timer.cancel()
                    self._lost.clear()
                    self._client = client
                    self.status = "connected"
                    self.connected_at = time.time()
                    self._up_since = time.monotonic()
                    self.last_error = None
                    self._connected.set()
                    log.info("MCP server %r connected: %d tools", self.name, len(self.tools))
                    await self._watch(client)
                    self._forget()  # lost: new calls fail at once instead of meeting a closing client
            finally:
                timer.cancel()
        if scope.cancelled_caught and self._client is None:
            raise TimeoutError(f"no connection and tool listing within {self.connect_timeout:g}s")

    async def _target(self, stack: AsyncExitStack) -> Any:
        cfg = self.config
        if cfg.transport == "stdio":
            from mcp import StdioServerParameters

            # The child gets the configured env plus the SDK's minimal set (HOME, LOGNAME, PATH,
            # SHELL, TERM, USER), never the rest of ours (API keys, tokens).
            return StdioServerParameters(command=cfg.command, args=list(cfg.args), env=dict(cfg.env), cwd=cfg.cwd)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        logging.getLogger("httpx2").setLevel(logging.WARNING)  # not a log line per MCP request

        http = await stack.enter_async_context(httpx2.AsyncClient(
            headers=cfg.headers, timeout=httpx2.Timeout(self.connect_timeout, read=max(300.0, self.call_timeout))))
        return streamable_http_client(cfg.url, http_client=http)

    async def _watch(self, client: Any) -> None:
        """Re-list the tools every ``health_interval`` seconds (the health check: servers of the
        2026 protocol answer no ``ping``); return when the server is lost."""
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self.options.health_interval)
                return
            except asyncio.TimeoutError:  # (TimeoutError itself from 3.11 on)
                pass
            try:
                with anyio.fail_after(self.connect_timeout):
                    await self._relist(client)
            except Exception as exc:  # noqa: BLE001
                self.last_error = f"health check failed: {describe(exc)}"
                return

    # -- tools ----------------------------------------------------------------

    async def refresh(self) -> None:
        """Re-list the tools now (after a call), so a changed definition is caught before the next one."""
        client = self._client
        if client is None:
            return
        try:
            with anyio.fail_after(min(10.0, self.connect_timeout)):
                await self._relist(client)
        except Exception as exc:  # noqa: BLE001 - the next health check tells whether it is gone
            log.debug("MCP server %r: re-listing tools failed: %s", self.name, describe(exc))

    async def _relist(self, client: Any) -> None:
        async with self._listing:
            tools, cursor = [], None
            for _ in range(_PAGE_CAP):
                page = await client.list_tools(cursor=cursor, cache_mode="refresh")
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            listing = {}
            for tool in tools:
                listing[tool.name] = tool
                seen, now = self.fingerprints.get(tool.name), fingerprint(tool)
                if seen is None:
                    self.fingerprints[tool.name] = now
                    if self.status == "connected":
                        log.warning("MCP server %r added tool %r after connecting", self.name, tool.name)
                elif seen != now and tool.name not in self.disabled:
                    self.disabled[tool.name] = "its description or schema changed after connecting; disabled " \
                                               "until restart"
                    log.warning("MCP server %r changed the definition of tool %r after connecting: the tool is "
                                "disabled until restart (possible tool poisoning)", self.name, tool.name)
            self.tools = listing

    # -- calls ----------------------------------------------------------------

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float) -> Any:
        """The tool's ``CallToolResult``; raises ``CallFailure`` when there is none."""
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        client = self._client
        if client is None:
            raise CallFailure("unavailable", f"MCP server {self.name!r} is not connected ({self.status}"
                                             f"{': ' + self.last_error if self.last_error else ''})")
        try:
            # the SDK's own timeout cancels the request on the server; ours is the backstop
            return await asyncio.wait_for(client.call_tool(tool, arguments, read_timeout_seconds=timeout),
                                          timeout + 2.0)
        except asyncio.TimeoutError:
            raise CallFailure("timeout", f"tool {tool!r} of MCP server {self.name!r} did not answer within "
                                         f"{timeout:g}s") from None
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise CallFailure("timeout", f"tool {tool!r} of MCP server {self.name!r} did not answer within "
                                             f"{timeout:g}s") from None
            if exc.code == CONNECTION_CLOSED:
                self.last_error = f"connection closed during a call of {tool!r}"
                self._lost.set()
                self._forget()
                raise CallFailure("connection_lost", f"MCP server {self.name!r} closed the connection during the "
                                                     f"call (it may have crashed); reconnecting") from None
            raise CallFailure("failed", f"MCP server {self.name!r} answered with an error: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001 - transport failures surface as assorted exceptions
            raise CallFailure("failed", f"calling {tool!r} on MCP server {self.name!r} failed: "
                                        f"{describe(exc)}") from None
