"""Turns on a shared device: the engines of one server (LLMs, Whisper, Kokoro, embeddings)
each run on their own thread, and take the device one unit of work at a time.

Left alone, two engine threads issue work to one device at once: on a GPU their kernels
queue behind each other in whatever order they arrive, on the CPU backend they fight over
the same cores (and the GIL), and a long transcription window can hold the chat streams'
decode steps up for seconds. Instead each unit of work (an LLM engine step; a Whisper
encoder block or decoder token; a Kokoro stage) runs inside ``turn()``. Turns are handed
over first come, first served: a thread that finishes its turn while another waits joins
the back of the line, so two busy engines alternate unit by unit (round robin) and neither
starves. An engine alone never waits (the fast path is an uncontended lock).

Nothing here knows about MLX: units that build lazy graphs evaluate them inside the turn
(``contended()`` says whether that matters right now). One ``DeviceTurns`` per device;
``vllm_mlx.serving`` gives every engine of a server the same one.
"""

from __future__ import annotations

import collections
import threading
import time
from contextlib import contextmanager
from typing import Iterator


class DeviceTurns:
    def __init__(self, recent: float = 0.25):
        self._cond = threading.Condition(threading.Lock())
        self._owner: object | None = None
        self._line: collections.deque = collections.deque()
        self._last_turn: dict[str, float] = {}  # participant -> when its last turn ended
        self._recent = recent  # seconds a participant counts as busy after its last turn
        self.turns = 0
        self.handovers = 0  # turns that went to another participant than the one before
        self._previous: str | None = None
        self._longest: dict[str, float] = {}  # participant -> its longest turn (seconds)
        self._mine = threading.local()  # a turn taken inside a turn (same thread) is part of it

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
        ticket = object()
        with self._cond:
            if self._owner is None and not self._line:
                self._owner = ticket
            else:
                self._line.append(ticket)
                while self._owner is not ticket:
                    self._cond.wait()
            self.turns += 1
            if self._previous is not None and self._previous != who:
                self.handovers += 1
            self._previous = who
        self._mine.depth = 1
        began = time.monotonic()
        try:
            yield
        finally:
            self._mine.depth = 0
            with self._cond:
                ended = self._last_turn[who] = time.monotonic()
                if ended - began > self._longest.get(who, 0.0):
                    self._longest[who] = ended - began
                self._owner = self._line.popleft() if self._line else None
                if self._owner is not None:
                    self._cond.notify_all()

    def contended(self, who: str) -> bool:
        """True when another participant waits for a turn or had one a moment ago: then a
        unit's lazy work must finish inside its turn (when alone it may run ahead)."""
        if self._line:
            return True
        now = time.monotonic()
        return any(other != who and now - at < self._recent for other, at in list(self._last_turn.items()))

    def stats(self) -> dict:
        return {"turns": self.turns, "handovers": self.handovers, "waiting": len(self._line),
                "longest_turn_ms": {who: round(s * 1000, 1) for who, s in list(self._longest.items())}}


@contextmanager
def maybe_turn(device: DeviceTurns | None, who: str) -> Iterator[None]:
    """``device.turn(who)``, or nothing when the engine has the device to itself."""
    if device is None:
        yield
        return
    with device.turn(who):
        yield
