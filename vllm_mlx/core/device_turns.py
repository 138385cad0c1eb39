"""Turns on a shared device: the engines of one server (LLMs, Whisper, Kokoro, embeddings)
each run on their own thread (or, with ``--engine-process``, in a child process), and take
the device one unit of work at a time.

Left alone, two engines issue work to one device at once: on a GPU their kernels queue
behind each other in whatever order they arrive, on the CPU backend they fight over the
same cores (and the GIL), and a long transcription window can hold the chat streams'
decode steps up for seconds. Instead each unit of work (an LLM engine step; a Whisper
encoder slice or decoder token; a Kokoro stage) runs inside ``turn()``. Turns are handed
over first come, first served (a ticket lock): an engine that finishes its turn while
another waits joins the back of the line, so two busy engines alternate unit by unit
(round robin) and neither starves. An engine alone never waits.

The state lives in shared memory (``multiprocessing`` primitives of the spawn context), so
an engine in a child process takes turns with the threads of the server process: pass the
``DeviceTurns`` to the child as a process argument. Nothing here knows about MLX: units
that build lazy graphs evaluate them inside the turn (``contended()`` says whether that
matters right now). One ``DeviceTurns`` per device; ``vllm_mlx.serving`` gives every
engine of a server the same one.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

SLOTS = 16  # participants tracked (recent activity, longest turn); more share slots


class DeviceTurns:
    def __init__(self, recent: float = 0.25):
        ctx = multiprocessing.get_context("spawn")
        self._cond = ctx.Condition(ctx.Lock())
        self._next = ctx.RawValue("q", 0)  # the next ticket to hand out
        self._serving = ctx.RawValue("q", 0)  # the ticket whose turn it is
        self._owner_pid = ctx.RawValue("q", 0)  # the process holding the turn (0: none)
        self._turns = ctx.RawValue("q", 0)
        self._handovers = ctx.RawValue("q", 0)
        self._previous = ctx.RawValue("i", -1)
        self._ended = ctx.RawArray("d", SLOTS)  # slot -> when its last turn ended (monotonic, system-wide)
        self._longest = ctx.RawArray("d", SLOTS)  # slot -> its longest turn (seconds)
        self._slots: dict[str, int] = {}
        self._recent = recent  # seconds a participant counts as busy after its last turn
        self._mine = threading.local()  # a turn taken inside a turn (same thread) is part of it

    def register(self, who: str) -> None:
        """Name a participant before a child process is started with this object."""
        self._slot(who)

    def _slot(self, who: str) -> int:
        return self._slots.setdefault(who, len(self._slots)) % SLOTS

    def __getstate__(self) -> dict:  # to a child process (at its start only: the primitives require it)
        state = dict(self.__dict__)
        del state["_mine"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._mine = threading.local()

    @contextmanager
    def turn(self, who: str) -> Iterator[None]:
        """Run the body as ``who``'s turn on the device (blocks while another turn runs)."""
        if getattr(self._mine, "depth", 0):
            self._mine.depth += 1
            try:
                yield
            finally:
                self._mine.depth -= 1
            return
        slot = self._slot(who)
        with self._cond:
            ticket = self._next.value
            self._next.value = ticket + 1
            while self._serving.value != ticket:
                if not self._cond.wait(1.0):
                    self._skip_dead_owner()
            self._owner_pid.value = os.getpid()
            self._turns.value += 1
            if self._previous.value not in (-1, slot):
                self._handovers.value += 1
            self._previous.value = slot
        self._mine.depth = 1
        began = time.monotonic()
        try:
            yield
        finally:
            self._mine.depth = 0
            with self._cond:
                ended = self._ended[slot] = time.monotonic()
                self._longest[slot] = max(self._longest[slot], ended - began)
                self._owner_pid.value = 0
                self._serving.value += 1
                self._cond.notify_all()

    def _skip_dead_owner(self) -> None:
        """A process that died holding the turn (an engine process killed mid-step) must not
        stop every other engine: its turn ends. Called with the lock held."""
        pid = self._owner_pid.value
        if not pid or pid == os.getpid():
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self._owner_pid.value = 0
            self._serving.value += 1
            self._cond.notify_all()
        except PermissionError:
            pass

    def contended(self, who: str) -> bool:
        """True when another participant waits for a turn or had one a moment ago: then a
        unit's lazy work must finish inside its turn (when alone it may run ahead)."""
        holding = 1 if getattr(self._mine, "depth", 0) else 0
        if self._next.value - self._serving.value - holding > 0:
            return True
        mine, now = self._slot(who), time.monotonic()
        return any(now - self._ended[s] < self._recent for s in range(SLOTS) if s != mine)

    def stats(self) -> dict:
        waiting = max(0, self._next.value - self._serving.value - (1 if self._owner_pid.value else 0))
        return {"turns": self._turns.value, "handovers": self._handovers.value, "waiting": waiting,
                "longest_turn_ms": {who: round(self._longest[slot % SLOTS] * 1000, 1)
                                    for who, slot in self._slots.items() if self._longest[slot % SLOTS] > 0}}


@contextmanager
def maybe_turn(device: DeviceTurns | None, who: str) -> Iterator[None]:
    """``device.turn(who)``, or nothing when the engine has the device to itself."""
    if device is None:
        yield
        return
    with device.turn(who):
        yield
