"""MCP servers never hold up the model server: one that never answers is timed out and
retried in the background while requests are served; SIGTERM closes every stdio child and
the server still exits 0."""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
import uuid

import httpx

from mcp_model import TOOLBOX
from mcp_stack import toolbox_pids
from server_process import ServerProcess


def test_a_silent_server_is_retried_in_the_background_and_sigterm_closes_every_child(random_model_dir, tmp_path):
    silent = socket.socket()  # accepts connections (the kernel does) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    tag = f"toolbox-{uuid.uuid4().hex}"
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {
        "one": {"command": sys.executable, "args": [str(TOOLBOX), tag]},
        "two": {"command": sys.executable, "args": [str(TOOLBOX), tag]},
        "silent": {"url": f"http://127.0.0.1:{silent.getsockname()[1]}/mcp", "connect_timeout": 2},
    }}))
    srv = ServerProcess([str(random_model_dir), "--mcp-config", str(config), "--shutdown-timeout", "5"],
                        log_path=tmp_path / "log").wait_ready()
    try:
        started = time.monotonic()
        reply = httpx.post(srv.url + "/v1/completions", json={"prompt": "hi", "max_tokens": 4}, timeout=60)
        assert reply.status_code == 200  # served while "silent" is still being waited for
        status = {}
        while time.monotonic() - started < 60:
            status = {s["name"]: s for s in httpx.get(srv.url + "/v1/mcp/servers", timeout=10).json()["data"]}
            if status["one"]["status"] == status["two"]["status"] == "connected" and \
                    status["silent"]["attempts"] >= 2:
                break
            time.sleep(0.2)
        assert status["one"]["status"] == status["two"]["status"] == "connected", status
        assert status["silent"]["status"] in ("connecting", "failed")
        assert "within 2s" in status["silent"]["last_error"] and status["silent"]["attempts"] >= 2
        children = toolbox_pids(tag)
        assert len(children) == 2
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(60) == 0, srv.log()
        assert toolbox_pids(tag) == set()
    finally:
        srv.stop()
        silent.close()
