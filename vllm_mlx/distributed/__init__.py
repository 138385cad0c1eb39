"""Serving one model across several machines (or processes) with mlx.distributed.

``group`` joins the group and shards the model (mlx-lm's sharding), ``lockstep``
keeps every rank's continuous-batching schedule identical, ``doorbell`` wakes
idle ranks without busy-polling, ``launcher`` is ``vllm-mlx launch``.
"""

from .group import DistributedError, Parallel, launched_backend

__all__ = ["DistributedError", "Parallel", "launched_backend"]
