"""CPU time of running processes over a window: how much of a core an idle rank burns."""

from __future__ import annotations

import os
import subprocess
import time


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc, else ps)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except FileNotFoundError:
        pass
    out = subprocess.run(["ps", "-o", "time=", "-p", str(pid)], capture_output=True, text=True, check=True).stdout
    parts = out.strip().replace("-", ":").split(":")  # [[dd-]hh:]mm:ss.ss
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return seconds


def cpu_share(pids: list[int], seconds: float) -> dict[int, float]:
    """Each process's CPU use over ``seconds`` of wall time, in cores (1.0 = one core busy)."""
    start = {pid: cpu_seconds(pid) for pid in pids}
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return {pid: round((cpu_seconds(pid) - start[pid]) / wall, 4) for pid in pids}
