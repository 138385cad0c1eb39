"""``vllm-mlx launch``: start one rank per host entry and supervise the group.

We read hostfiles with mlx's own parser and give each rank the environment
``mlx.launch`` gives it (``MLX_RANK``, ``MLX_HOSTFILE`` for ring, the JACCL
coordinator and device file, ``mpirun`` for MPI), but start the ranks ourselves,
because ``mlx.launch`` (mlx 0.32) exits 0 when ranks fail, does not pass SIGTERM
on (killing it orphans the ranks), waits forever on a stopped rank and busy-polls
the ranks' output pipes. Here:

* every rank runs in its own process group (locally) or under ``ssh -tt`` (the
  remote side is hung up when we go), with its output passed straight through;
* when any rank ends, the others get a few seconds to end on their own (they
  notice a lost peer by themselves), then SIGTERM (+SIGCONT for a stopped one),
  then SIGKILL, to each rank's whole process group;
* our exit status is the first failing rank's (128+N for a signal), 0 only when
  every rank exited 0;
* SIGTERM/SIGINT to us go to every rank; rank 0 drains its requests and stops
  the group (the others only note the signal), SIGKILL after ``grace`` seconds;
* ``restarts`` > 0 starts a failed group again, on fresh ports.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

log = logging.getLogger("vllm_mlx.launch")

LOCAL = ("127.0.0.1",)  # as in mlx.launch: only this literal runs locally; other names go through ssh


@dataclass
class Plan:
    hosts: list  # mlx's Host entries: ssh_hostname, ips, rdma
    backend: str
    command: list[str]
    envs: list[str] = field(default_factory=list)
    starting_port: int | None = None
    python: str | None = None
    cwd: str | None = None


def load_hosts(hostfile: str | None, hosts: str, repeat: int):
    """(hosts, backend named in the file, env entries) via mlx's hostfile parser."""
    from mlx._distributed_utils.common import Hostfile

    parsed = Hostfile.from_file(hostfile) if hostfile else Hostfile.from_list(hosts, repeat)
    return parsed.hosts, parsed.backend, list(parsed.envs)


def rank_command(command: list[str], python: str | None) -> list[str]:
    """``serve ...`` (a vllm-mlx subcommand) runs with this interpreter; anything else runs as given."""
    if command and command[0] in ("serve", "bench"):
        return [python or sys.executable, "-m", "vllm_mlx.cli.main", *command]
    return list(command)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rank:
    def __init__(self, rank: int, host: str, proc: subprocess.Popen, stop_signal: int = signal.SIGTERM):
        self.rank, self.host, self.proc = rank, host, proc
        self.stop_signal = stop_signal
        self.code: int | None = None

    def poll(self) -> int | None:
        if self.code is None:
            code = self.proc.poll()
            if code is not None:
                self.code = 128 - code if code < 0 else code  # -9 -> 137, as a shell reports it
        return self.code

    def signal(self, sig: int) -> None:
        if self.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class Group:
    """One start of every rank."""

    def __init__(self, plan: Plan, attempt: int):
        self.plan = plan
        self.attempt = attempt
        self.ranks: list[Rank] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="vllm-mlx-launch-")

    # -- start -----------------------------------------------------------------
    def start(self) -> "Group":
        plan = self.plan
        if plan.backend == "mpi":
            # mpirun aborts the job on SIGTERM but forwards SIGUSR1 to every rank, which our ranks read
            # as SIGTERM: a graceful stop
            self.ranks = [Rank(0, "mpirun", self._popen(self._mpirun(), local=True), signal.SIGUSR1)]
            return self
        common, files = self._shared_env()
        command = rank_command(plan.command, plan.python)
        for rank, host in enumerate(plan.hosts):
            env = [*plan.envs, *common, f"MLX_RANK={rank}", f"VLLM_MLX_DIST_BACKEND={_backend_name(plan.backend)}"]
            local = host.ssh_hostname in LOCAL
            if local:
                extra = dict(e.split("=", 1) for e in env)
                for name, content in files.items():
                    path = os.path.join(self._tmp.name, f"{name.lower()}-{rank}.json")
                    with open(path, "w") as f:
                        f.write(content)
                    extra[name] = path
                proc = self._popen(command, local=True, env={**os.environ, **extra})
            else:
                proc = self._popen(["ssh", "-tt", "-o", "LogLevel=QUIET", host.ssh_hostname,
                                    _remote_script(env, files, command, plan.cwd)], local=False)
            self.ranks.append(Rank(rank, host.ssh_hostname, proc))
        log.info("started %d ranks (%s backend, attempt %d): %s", len(self.ranks), plan.backend,
                 self.attempt + 1, shlex.join(command))
        return self

    def _popen(self, cmd: list[str], local: bool, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(cmd, env=env, cwd=self.plan.cwd if local else None, start_new_session=True,
                                stdin=subprocess.DEVNULL if local else subprocess.PIPE)

    def _shared_env(self) -> tuple[list[str], dict[str, str]]:
        plan, hosts = self.plan, self.plan.hosts
        if any(not h.ips for h in hosts):
            raise ValueError(f"the {plan.backend} backend needs an IP address for every host (hostfile 'ips')")
        if plan.backend in ("jaccl", "jaccl-ring"):
            port = plan.starting_port or _free_port()
            env = [f"MLX_JACCL_COORDINATOR={hosts[0].ips[0]}:{port + self.attempt}",
                   f"VLLM_MLX_RANK0_HOST={hosts[0].ips[0]}"]
            if plan.backend == "jaccl-ring":
                env.append("MLX_JACCL_RING=1")
            return env, {"MLX_IBV_DEVICES": json.dumps([h.rdma for h in hosts])}
        # ring: one "ip:port" per rank; fresh ports each attempt
        all_local = all(h.ssh_hostname in LOCAL for h in hosts)
        ring, port = [], (plan.starting_port or 32323) + self.attempt * sum(len(h.ips) for h in hosts)
        for h in hosts:
            node = []
            for ip in h.ips:
                node.append(f"{ip}:{_free_port() if all_local and plan.starting_port is None else port}")
                port += 1
            ring.append(node)
        return [f"VLLM_MLX_RANK0_HOST={hosts[0].ips[0]}"], {"MLX_HOSTFILE": json.dumps(ring)}

    def _mpirun(self) -> list[str]:
        plan = self.plan
        hostfile = os.path.join(self._tmp.name, "mpi-hosts.txt")
        counts: dict[str, int] = {}
        for h in plan.hosts:
            counts[h.ssh_hostname] = counts.get(h.ssh_hostname, 0) + 1
        with open(hostfile, "w") as f:
            for name, n in counts.items():
                f.write(f"{'localhost' if name in LOCAL else name} slots={n}\n")
        env = [*plan.envs, "VLLM_MLX_DIST_BACKEND=mpi"]
        if plan.hosts[0].ips:
            env.append(f"VLLM_MLX_RANK0_HOST={plan.hosts[0].ips[0]}")
        return ["mpirun", "--hostfile", hostfile, *(["-wdir", plan.cwd] if plan.cwd else []),
                *sum((["-x", e] for e in env), []), "--", *rank_command(plan.command, plan.python)]

    # -- supervise ----------------------------------------------------------------
    def first_exit(self, stop_requested) -> Rank | None:
        """Block until a rank exits (that rank) or a stop is requested (None)."""
        while not stop_requested():
            for r in self.ranks:
                if r.poll() is not None:
                    return r
            time.sleep(0.2)
        return None

    def end(self, settle: float, grace: float) -> None:
        """Let the rest end on their own for ``settle`` s, then SIGTERM, then SIGKILL after ``grace`` s."""
        self._wait_all(settle)
        self.terminate(grace)

    def terminate(self, grace: float) -> None:
        for r in self.ranks:
            r.signal(r.stop_signal)
            r.signal(signal.SIGCONT)  # a stopped rank cannot act on SIGTERM
        if not self._wait_all(grace):
            for r in self.ranks:
                if r.poll() is None:
                    log.warning("rank %d (%s) did not exit: SIGKILL", r.rank, r.host)
                r.signal(signal.SIGKILL)
            self._wait_all(10)
        self._tmp.cleanup()

    def _wait_all(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(r.poll() is not None for r in self.ranks):
                return True
            time.sleep(0.1)
        return all(r.poll() is not None for r in self.ranks)

    def status(self, first: Rank | None) -> int:
        """The first failing rank's status (the one that ended first, if it failed), else any failure, else 0."""
        if first is not None and first.code:
            return first.code
        return next((r.code for r in self.ranks if r.code), 0)


def _backend_name(backend: str) -> str:
    return "jaccl" if backend.startswith("jaccl") else backend


def _remote_script(env: list[str], files: dict[str, str], command: list[str], cwd: str | None) -> str:
    parts = ["stty -echo 2>/dev/null;"]
    parts.append(f"cd {shlex.quote(cwd or os.getcwd())} 2>/dev/null;")
    for entry in env:
        key, _, value = entry.partition("=")
        parts.append(f"export {key}={shlex.quote(value)};")
    for name, content in files.items():
        parts.append(f"f=$(mktemp); echo {shlex.quote(content)} > $f; export {name}=$f;")
    parts.append("exec " + shlex.join(command))
    return " ".join(parts)


def supervise(plan: Plan, restarts: int = 0, grace: float = 45.0, settle: float = 3.0) -> int:
    """Run the group until it ends; restart a failed group up to ``restarts`` times. The exit status."""
    stop = {"sig": None}

    def on_signal(sig, _frame):
        stop["sig"] = sig

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        attempt = 0
        while True:
            group = Group(plan, attempt).start()
            first = group.first_exit(lambda: stop["sig"] is not None)
            if first is None:  # asked to stop: SIGTERM to every rank, rank 0 drains and stops the group
                log.info("signal %d: stopping every rank (SIGKILL after %g s)", stop["sig"], grace)
                group.terminate(grace)
                return group.status(None)
            log.log(logging.ERROR if first.code else logging.INFO, "rank %d (%s) exited with status %d",
                    first.rank, first.host, first.code)
            # a failed group has nothing left to drain: a short wait, then SIGTERM and soon SIGKILL
            group.end(settle, min(grace, 5.0)) if first.code else group.end(grace, grace)
            status = group.status(first)
            if status == 0 or attempt >= restarts or stop["sig"] is not None:
                return status
            attempt += 1
            log.warning("restarting the group on fresh ports (restart %d of %d)", attempt, restarts)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
