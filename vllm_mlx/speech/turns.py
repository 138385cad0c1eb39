"""Make a model's submodules take turns on a shared device (``core.device_turns``).

A loader names the units (``LoadedModel.turn_units``: Whisper's encoder blocks and its
decoder, Kokoro's stages); ``take_turns`` makes every call of each one turn. The unit's
lazy result is evaluated inside its turn when another engine is busy, so the turn really
covers the work; alone, it stays lazy and the model's own pipelining (mlx-audio's
``async_eval`` decode loop) runs as it would without us.

We wrap instances, never classes: only the served model's own modules change. Each unit
instance gets a one-off subclass whose ``__call__`` takes the turn; its parameters, names
and attributes stay as they were (a wrapper module would rename the parameter tree).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

from ..core.device_turns import DeviceTurns


def resolve_units(root: Any, paths: tuple[str, ...]) -> list[Any]:
    """The module instances ``paths`` name under ``root`` (a list or tuple: every item)."""
    found = []
    for path in paths:
        obj = root
        for part in path.split("."):
            obj = obj[int(part)] if isinstance(obj, (list, tuple)) and part.isdigit() else getattr(obj, part)
        found.extend(obj if isinstance(obj, (list, tuple)) else [obj])
    return found


def take_turns(root: Any, paths: tuple[str, ...], device: DeviceTurns, who: str) -> int:
    """Every call of each unit becomes one turn of ``who`` on ``device``; returns the unit count."""
    units = resolve_units(root, paths)
    for unit in units:
        base = type(unit)
        if getattr(base, "_vllm_mlx_turns", False):
            continue  # already taking turns
        inner = base.__call__

        def __call__(self, *args, _inner=inner, **kwargs):
            with device.turn(who):
                out = _inner(self, *args, **kwargs)
                if device.contended(who):
                    mx.eval(_arrays(out))
            return out

        unit.__class__ = type(f"{base.__name__}OnTurns", (base,), {"__call__": __call__, "_vllm_mlx_turns": True})
    return len(units)


def _arrays(tree: Any) -> list:
    """The arrays in a nested result (tuples, lists, dicts; None and other leaves skipped)."""
    out, stack = [], [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, mx.array):
            out.append(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return out
