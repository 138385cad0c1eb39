"""How much memory the KV cache may use: ``--kv-cache-memory`` parsing and the default."""

from __future__ import annotations

import os
import re

import mlx.core as mx
from mlx.utils import tree_flatten

GiB = 1 << 30
_UNITS = {"": GiB, "g": GiB, "gb": GiB, "gib": GiB, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}


def parse_memory(text: str | float | int | None) -> tuple[int | None, float | None]:
    """``"8"``/``"8GiB"``/``"512MiB"`` -> (bytes, None); ``"40%"`` -> (None, 0.4)."""
    if text is None:
        return None, None
    s = str(text).strip().lower()
    if s.endswith("%"):
        frac = float(s[:-1]) / 100
        if not 0 < frac <= 1:
            raise ValueError(f"--kv-cache-memory {text}: a percentage must be in (0, 100]")
        return None, frac
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([a-z]*)", s)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"--kv-cache-memory {text}: use GiB (8, 8GiB), MiB (512MiB) or a share of RAM (40%)")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if value <= 0:
        raise ValueError(f"--kv-cache-memory {text}: must be positive")
    return int(value), None


def system_memory() -> int:
    """Bytes of memory the accelerator can use: unified memory on a Mac, RAM elsewhere."""
    try:
        info = mx.device_info()
        size = info.get("max_recommended_working_set_size") or info.get("memory_size")
        if size:
            return int(size)
    except Exception:  # noqa: BLE001 - older MLX or a backend without device info
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def model_bytes(model) -> int:
    return sum(v.nbytes for _, v in tree_flatten(model.parameters()))


DEFAULT_SHARE = 0.6  # of what the device may use, before subtracting the weights


def kv_budget(model, setting: str | float | None) -> int:
    """The KV cache budget in bytes.

    Default: 60% of the memory the device may use (on a Mac, the recommended
    working set of unified memory) minus the model's weights, at least 256 MiB.
    The rest is left to activations, the OS and other apps.
    """
    absolute, fraction = parse_memory(setting)
    if absolute is not None:
        return absolute
    share = fraction if fraction is not None else DEFAULT_SHARE
    return max(256 << 20, int(system_memory() * share) - model_bytes(model))
