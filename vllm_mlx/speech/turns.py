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

from typing import Any, Callable

import mlx.core as mx

from ..core.device_turns import DeviceTurns


def resolve_units(root: Any, paths: tuple) -> list[tuple[Any, Callable | None]]:
    """(module instance, splitter) for each unit ``paths`` name under ``root`` (a path naming a
    list: every item). An entry is a dotted path, or (path, splitter): see ``take_turns``."""
    found = []
    for entry in paths:
        path, split = (entry, None) if isinstance(entry, str) else entry
        obj = root
        for part in path.split("."):
            obj = obj[int(part)] if isinstance(obj, (list, tuple)) and part.isdigit() else getattr(obj, part)
        found.extend((unit, split) for unit in (obj if isinstance(obj, (list, tuple)) else [obj]))
    return found


def take_turns(root: Any, paths: tuple, device: DeviceTurns, who: str) -> int:
    """Every call of each unit becomes one turn of ``who`` on ``device``; returns the unit count.

    A unit given as (path, splitter) whose single call is too long for one turn (Whisper's
    encoder blocks attend over 1,500 frames) runs, while another engine is busy, as
    ``splitter(unit, turn, *args, **kwargs)``: it does the same work in several turns, each
    inside ``with turn():`` and evaluated there. Alone, the unit runs whole."""
    units = resolve_units(root, paths)
    for unit, split in units:
        base = type(unit)
        if getattr(base, "_vllm_mlx_turns", False):
            continue  # already taking turns
        inner = base.__call__

        def __call__(self, *args, _inner=inner, _split=split, **kwargs):
            if _split is not None and device.contended(who):
                return _split(self, lambda: device.turn(who), *args, **kwargs)
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
