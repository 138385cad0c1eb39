"""A 2-rank distributed server (`vllm-mlx launch -n 2 -- serve ...`) on a loopback port, and its ranks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from server_process import free_port

# One BLAS thread per rank: two ranks on a small machine must not fight over cores.
RANK_ENV = {"OPENBLAS_NUM_THREADS": "1"}


class LaunchedServer:
    def __init__(self, serve_args: list[str], log_path: Path, launch_args: list[str] = (), env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [sys.executable, "-m", "vllm_mlx.cli.main", "launch", "-n", "2", "--grace", "10", *launch_args, "--",
               "serve", *serve_args, "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **RANK_ENV, **(env or {})}, start_new_session=True)
        self.rank_pids: dict[int, int] = {}

    def wait_ready(self, timeout: float = 240.0) -> "LaunchedServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"launcher exited with {self.proc.returncode}: {self.log()}")
            self._find_ranks()
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200 and len(self.rank_pids) == 2:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"not ready after {timeout}s: {self.log()}")

    def _find_ranks(self) -> None:
        """The launcher's children, by their MLX_RANK."""
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return
        for pid in map(int, children):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for entry in env:
                if entry.startswith(b"MLX_RANK="):
                    self.rank_pids[int(entry[9:])] = pid

    def health(self) -> int | None:
        try:
            return httpx.get(self.url + "/health", timeout=2).status_code
        except httpx.HTTPError:
            return None

    def signal_rank(self, rank: int, sig: int) -> None:
        os.kill(self.rank_pids[rank], sig)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def live_ranks(self) -> list[int]:
        """Rank processes still alive (zombies count as gone)."""
        alive = []
        for pid in self.rank_pids.values():
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(pid)
        return alive

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM to the launcher (the way a service manager stops it); its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.wait_exit(timeout)
        if code is None:
            self.kill()
        return code

    def kill(self) -> None:
        """Last resort cleanup: the launcher and every rank, by pid."""
        for pid in [self.proc.pid, *self.rank_pids.values()]:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        if self.proc.poll() is None or self.live_ranks():
            self.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""
