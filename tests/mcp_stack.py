"""The MCP test stack: the toolbox MCP server over streamable HTTP on a loopback port, and
the real vllm-mlx server with an mcp.json naming it and three stdio toolboxes (plus one
server that cannot start), serving the MCP model (mcp_model.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from mcp_model import TOOLBOX
from server_process import ServerProcess, free_port

API_KEY = "sk-mcp-test"
SECRET = "do-not-leak-this-secret"


def start_http_toolbox(log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(TOOLBOX), "http", str(port)], stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the HTTP toolbox exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the HTTP toolbox did not start")


def write_config(path: Path, url: str) -> Path:
    toolbox = {"command": sys.executable, "args": [str(TOOLBOX)]}
    path.write_text(json.dumps({"mcpServers": {
        "files": {**toolbox, "env": {"TOOLBOX_GREETING": "${MCP_TEST_GREETING}"}},
        "web": {"url": url, "headers": {"X-Greeting": "${MCP_TEST_GREETING}"}},
        "faulty": {**toolbox, "call_timeout": 2},
        "limited": {**toolbox, "allowed_tools": ["read_file", "echo", "crash"], "blocked_tools": ["crash"]},
        "broken": {"command": "/nonexistent/mcp-server", "connect_timeout": 5},
    }}))
    return path


@dataclass
class McpStack:
    server: ServerProcess
    http_toolbox: subprocess.Popen
    audit_log: Path

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60, **kw)

    def post(self, path: str, body, **kw) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60,
                          **kw)

    def servers(self) -> dict[str, dict]:
        return {s["name"]: s for s in self.get("/v1/mcp/servers").json()["data"]}

    def wait_connected(self, *names: str, timeout: float = 60) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.servers()
            if all(status[n]["status"] == "connected" for n in names):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"not connected: {status}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.server.stop()
        self.http_toolbox.terminate()
        self.http_toolbox.wait(10)


def start_stack(model_dir: Path, tmp: Path) -> McpStack:
    toolbox, url = start_http_toolbox(tmp / "http-toolbox.log")
    config = write_config(tmp / "mcp.json", url)
    audit = tmp / "audit.jsonl"
    try:
        srv = ServerProcess([str(model_dir), "--api-key", API_KEY, "--tool-call-parser", "hermes",
                             "--mcp-config", str(config), "--mcp-audit-log", str(audit),
                             "--mcp-max-tool-iterations", "1", "--mcp-max-result-bytes", "1000"],
                            env={"MCP_TEST_GREETING": "hello", "SECRET_TOKEN": SECRET},
                            log_path=tmp / "server.log").wait_ready()
    except BaseException:
        toolbox.kill()
        raise
    return McpStack(srv, toolbox, audit)


def toolbox_pids(tag: str) -> set[int]:
    """Live processes whose command line holds ``tag``."""
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and tag.encode() in (proc / "cmdline").read_bytes():
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    pids.add(int(proc.name))
        except OSError:
            pass
    return pids
