"""Joining the distributed group and sharding a model across it.

Transport and sharding are MLX's and mlx-lm's: ``mx.distributed`` (ring over TCP,
JACCL over Thunderbolt RDMA, MPI) and the families' own ``model.shard(group)``
(tensor parallel) and ``model.model.pipeline(group)`` (pipeline parallel).
What this module adds: initialise only when the process was launched
distributed, always naming the backend (a bare ``init()`` with Open MPI
installed starts an MPI singleton), and refuse a family that cannot be sharded
the asked way with a message that says what it does support.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

BACKENDS = ("ring", "jaccl", "mpi")
BACKEND_ENV = "VLLM_MLX_DIST_BACKEND"  # set by ``vllm-mlx launch``; mlx.launch sets the others below


class DistributedError(RuntimeError):
    """The distributed set-up cannot work (a start-up error with its reason)."""


@dataclass
class Parallel:
    """What the command line asked for."""

    tensor: int = 1
    pipeline: int = 1

    @property
    def size(self) -> int:
        return self.tensor * self.pipeline

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def mode(self) -> str:
        return "tensor" if self.tensor > 1 else "pipeline"


def launched_backend(environ: dict | None = None) -> str | None:
    """The backend this process was launched for, or None when it runs alone."""
    env = os.environ if environ is None else environ
    named = env.get(BACKEND_ENV)
    if named:
        return named
    if env.get("MLX_JACCL_COORDINATOR") and env.get("MLX_RANK") is not None:
        return "jaccl"
    if env.get("MLX_HOSTFILE") and env.get("MLX_RANK") is not None:
        return "ring"
    if env.get("OMPI_COMM_WORLD_SIZE") or env.get("PMI_SIZE"):
        return "mpi"
    return None


def init_group(parallel: Parallel):
    """Join the group this process was launched into; check its size against the request."""
    import mlx.core as mx

    if parallel.tensor > 1 and parallel.pipeline > 1:
        raise DistributedError("--tensor-parallel-size and --pipeline-parallel-size together are not supported "
                               "yet: use one of them")
    backend = launched_backend()
    if backend is None:
        raise DistributedError(
            f"--{parallel.mode}-parallel-size {parallel.size} needs one process per rank: start it with `vllm-mlx launch -n {parallel.size} -- serve "
            "...` (or under `mlx.launch`)")
    if backend not in BACKENDS:
        raise DistributedError(f"unknown distributed backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    try:
        group = mx.distributed.init(strict=True, backend=backend)
    except Exception as exc:  # noqa: BLE001 - MLX raises RuntimeError/ValueError with its own reason
        raise DistributedError(f"cannot join the {backend} group: {type(exc).__name__}: {exc}") from exc
    if group.size() != parallel.size:
        raise DistributedError(f"launched {group.size()} ranks but the model is split {parallel.size} ways "
                               f"({parallel.mode} parallel): launch exactly {parallel.size} ranks")
    return group


def supported(model: Any) -> dict[str, bool]:
    """Which kinds of sharding a loaded mlx-lm model implements."""
    inner = getattr(model, "model", None)
    return {"tensor": callable(getattr(model, "shard", None)),
            "pipeline": callable(getattr(inner, "pipeline", None))}


def check_shardable(model: Any, model_type: str, parallel: Parallel) -> None:
    support = supported(model)
    if support[parallel.mode]:
        return
    can = [kind for kind, ok in support.items() if ok]
    what = (f"only {' and '.join(k + ' parallel' for k in can)} "
            f"(--{can[0]}-parallel-size)") if can else "no sharding at all (serve it on one Mac)"
    raise DistributedError(f"model family {model_type!r} cannot be split by {parallel.mode} parallelism; "
                           f"mlx-lm's {model_type} supports {what}")


def shard(model: Any, model_type: str, parallel: Parallel, group) -> None:
    """Shard a (lazily loaded) model in place, then load this rank's part of the weights."""
    import mlx.core as mx

    check_shardable(model, model_type, parallel)
    if parallel.mode == "tensor":
        model.shard(group)
    else:
        model.model.pipeline(group)
    mx.eval(model.parameters())


def rank0_host(environ: dict | None = None) -> str | None:
    """Rank 0's address as the launcher told every rank (ring hostfile, JACCL coordinator), if known."""
    env = os.environ if environ is None else environ
    if env.get("VLLM_MLX_RANK0_HOST"):
        return env["VLLM_MLX_RANK0_HOST"]
    coordinator = env.get("MLX_JACCL_COORDINATOR")
    if coordinator:
        return coordinator.rsplit(":", 1)[0]
    path = env.get("MLX_HOSTFILE")
    if path:
        try:
            with open(path) as f:
                hosts = json.load(f)
            return str(hosts[0][0]).rsplit(":", 1)[0]
        except (OSError, ValueError, IndexError, KeyError, TypeError):
            return None
    return None


def exit_process(status: int) -> None:
    """End a rank's process after a clean stop. Under MPI, finalize first and skip interpreter
    teardown: MLX finalizes MPI only when its group object is freed, which never happens while the
    parked engine thread holds it, and mpirun reports a rank that exits unfinalized as a failure."""
    if launched_backend() != "mpi":
        return
    import ctypes
    import logging
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        ctypes.CDLL(None).MPI_Finalize()
    except (OSError, AttributeError):  # MPI symbols not global in this process: nothing to finalize
        pass
    os._exit(status)
