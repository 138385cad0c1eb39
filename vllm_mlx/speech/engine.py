"""The speech engine: one thread per speech model that owns its MLX work.

A job is an iterator whose every ``next()`` is one step of work (a 30 s window of a
transcription, one sentence of speech). The thread runs one step of each waiting job
in turn, so a long transcription does not hold a short one up, and each step's result
is handed to the event loop as soon as it is ready (that is what streaming sends).
The event loop never calls MLX; the LLM engine runs on its own thread beside this one.

Engines of one server share the device through ``core.device_turns``: a model whose loader
names turn units (Whisper: each encoder block and each decoder token) takes one turn per
unit, so an LLM's decode steps interleave with a transcription window; any other model
takes one turn per step.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
from typing import Any, AsyncIterator, Callable, Iterator

import mlx.core as mx

from ..core.device_turns import DeviceTurns, maybe_turn

log = logging.getLogger("vllm_mlx.speech")

_DONE = object()


class _Job:
    def __init__(self, make: Callable[[], Iterator[Any]], loop: asyncio.AbstractEventLoop):
        self.make = make
        self.steps: Iterator[Any] | None = None
        self.loop = loop
        self.out: asyncio.Queue = asyncio.Queue()
        self.cancelled = False

    def emit(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # the loop closed (shutdown): nobody is listening
            self.cancelled = True


class SpeechEngine:
    def __init__(self, name: str, device: DeviceTurns | None = None, steps_take_turns: bool = True):
        self.name = name
        self.device = device
        self._step_turns = device if steps_take_turns else None  # None: the model's units take them
        self.state = "created"
        self.jobs_done = 0
        self.jobs_failed = 0
        self._incoming: queue.SimpleQueue = queue.SimpleQueue()
        self._active: collections.deque[_Job] = collections.deque()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> "SpeechEngine":
        self._thread = threading.Thread(target=self._run, name=f"vllm-mlx-speech-{self.name}", daemon=True)
        self.state = "running"
        self._thread.start()
        return self

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._incoming.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        self.state = "stopped"

    def health(self) -> dict:
        return {"state": self.state, "running": len(self._active), "waiting": self._incoming.qsize(),
                "done": self.jobs_done, "failed": self.jobs_failed}

    async def run(self, make: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
        """Run ``make()``'s steps on the engine thread; yields each step's result.
        An exception in a step is raised here; leaving early cancels the job."""
        job = _Job(make, asyncio.get_running_loop())
        self._incoming.put(job)
        try:
            while True:
                item = await job.out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancelled = True

    async def call(self, make: Callable[[], Iterator[Any]]) -> list[Any]:
        return [item async for item in self.run(make)]

    # -- the engine thread ---------------------------------------------------------
    def _run(self) -> None:
        stream = mx.new_stream(mx.default_device())
        with mx.stream(stream):
            while not self._stopping:
                self._admit(block=not self._active)
                if self._active:
                    job = self._active.popleft()
                    if self._step(job):
                        self._admit(block=False)  # requests that came in meanwhile go first
                        self._active.append(job)
        for job in list(self._active):
            job.emit(RuntimeError("the server is shutting down"))

    def _admit(self, block: bool) -> None:
        try:
            item = self._incoming.get(block=block)
            while True:
                if item is not None:
                    self._active.append(item)
                item = self._incoming.get_nowait()
        except queue.Empty:
            pass

    def _step(self, job: _Job) -> bool:
        """Run one step of ``job``; True if it has more."""
        if job.cancelled:
            return False
        try:
            if job.steps is None:
                job.steps = iter(job.make())
            with maybe_turn(self._step_turns, self.name):
                item = next(job.steps)
        except StopIteration:
            self.jobs_done += 1
            job.emit(_DONE)
            return False
        except Exception as exc:  # noqa: BLE001 - the job fails, the engine goes on
            log.warning("speech job failed on %s: %s: %s", self.name, type(exc).__name__, exc)
            self.jobs_failed += 1
            job.emit(exc)
            return False
        job.emit(item)
        return True
