"""One MCP server's connection, in-process against the real toolbox over stdio: the periodic
health check keeps a healthy server connected, and notices a child that died while idle."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid

from mcp_model import TOOLBOX
from mcp_stack import toolbox_pids
from vllm_mlx.mcp_host import HostOptions, McpHost, parse_config


def test_health_checks_keep_a_server_and_notice_a_dead_one():
    tag = f"toolbox-{uuid.uuid4().hex}"
    config = parse_config({"mcpServers": {"box": {"command": sys.executable, "args": [str(TOOLBOX), tag]}}})

    async def scenario():
        host = McpHost(config, HostOptions(health_interval=0.3, retry_initial=0.2))
        host.start()
        conn = host.servers["box"]
        try:
            await host.wait_ready()
            assert conn.status == "connected", conn.last_error
            await asyncio.sleep(1.5)  # several health checks
            assert (conn.status, conn.attempts, conn.last_error) == ("connected", 1, None)
            [pid] = toolbox_pids(tag)
            os.kill(pid, signal.SIGKILL)  # dies while idle: no call will tell us
            deadline = time.monotonic() + 30
            while conn.attempts < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert conn.attempts == 2 and "health check failed" in (conn.last_error or "")
            while conn.status != "connected" and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            done = await host.call(host.find("box__echo"), {"text": "again"})
            assert (done.outcome, done.output) == ("ok", "again")
        finally:
            await host.stop()
        assert toolbox_pids(tag) == set()

    asyncio.run(scenario())
