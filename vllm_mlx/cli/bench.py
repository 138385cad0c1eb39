"""``vllm-mlx bench``: load benchmarks that print JSON."""

from __future__ import annotations

import click


@click.group()
def bench() -> None:
    """Benchmarks: against a running server (serve) or in-process (engine)."""
