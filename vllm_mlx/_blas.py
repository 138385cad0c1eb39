"""Use OpenBLAS for MLX's CPU backend on Linux when it is installed.

MLX's Linux CPU wheel links the reference BLAS, which makes float32 matmuls
10-20x slower than OpenBLAS on the same cores. Loading OpenBLAS globally before
``mlx.core`` is imported makes MLX's BLAS calls resolve to it, the same effect as
``LD_PRELOAD`` without asking users to set it. No effect on macOS (Accelerate)
or once MLX is already imported; ``VLLM_MLX_NO_OPENBLAS=1`` turns it off.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)


def preload_openblas() -> str | None:
    if not sys.platform.startswith("linux") or os.environ.get("VLLM_MLX_NO_OPENBLAS"):
        return None
    if "mlx.core" in sys.modules:
        return None
    for path in _CANDIDATES + tuple(glob.glob("/usr/lib/*/openblas-pthread/libopenblas.so.0")):
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            return path
    return None
