"""One audit line per tool call: who was called, how long it took, how it ended, how big.

Never the arguments or the result themselves (they may carry secrets); only their sizes.
Lines go to the ``vllm_mlx.mcp.audit`` logger, and to a file with ``--mcp-audit-log``.
"""

from __future__ import annotations

import json
import logging
import time

log = logging.getLogger("vllm_mlx.mcp.audit")


def open_audit_file(path: str) -> None:
    """Also append audit lines to ``path``, whatever the log level."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def audit(*, server: str, tool: str, outcome: str, duration_s: float, args_bytes: int, result_bytes: int,
          truncated: bool = False, request_id: str | None = None) -> None:
    """``outcome`` is one of: ok, tool_error, invalid_arguments, not_allowed, disabled,
    unavailable, timeout, connection_lost, failed, cancelled (the client went away mid-call)."""
    log.info(json.dumps({
        "ts": round(time.time(), 3), "event": "mcp_call", "server": server, "tool": tool, "outcome": outcome,
        "duration_ms": round(duration_s * 1000, 1), "args_bytes": args_bytes, "result_bytes": result_bytes,
        "truncated": truncated, "request_id": request_id}))
