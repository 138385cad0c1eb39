"""The embedding engine: one thread owns every MLX call of an embedding model.

Requests are queued; each time the thread wakes it takes every request waiting,
sorts their inputs by length and runs them in batches bounded by a token budget
(rows x longest input, padding included) and a row limit, then hands each
request its vectors: truncated to the dimensions it asked for, L2-normalized,
as little-endian float32 bytes (what ``base64`` carries, and cheap to turn into
floats off this thread). ``AsyncEmbedder`` is the asyncio front.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import mlx.core as mx

from .engine import EngineCounters
from .metrics import Metrics

log = logging.getLogger("vllm_mlx.engine")

Deliver = Callable[[list[bytes] | None, str | None], None]  # (vectors, error), called on the engine thread


@dataclass
class EmbedJob:
    inputs: list[list[int]]
    dimensions: int | None
    deliver: Deliver
    cancelled: bool = False  # the client left: skip it if not started
    results: list[bytes | None] = field(default_factory=list)
    error: str | None = None


class EmbeddingEngine:
    """Batches embedding requests on its own thread. ``submit`` may be called from any thread."""

    def __init__(self, model: Any, tokenizer: Any = None, *, max_batch_tokens: int = 8192,
                 max_batch_size: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.vocab_size = _vocab_size(model, tokenizer)
        self.counters = EngineCounters()
        self.state = "created"
        self.num_waiting = 0  # inputs queued
        self.num_running = 0  # inputs in the batch being run
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stopped = threading.Event()

    def kv_stats(self) -> dict:
        return {}  # no KV cache kept between requests

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "EmbeddingEngine":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vllm-mlx-embed", daemon=True)
            self.state = "running"
            self._thread.start()
        return self

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._queue.put(None)
        if self._thread is not None:
            self._stopped.wait(timeout)
        self.state = "stopped"

    def submit(self, job: EmbedJob) -> None:
        """Queue a job; jobs queued before ``start`` run together in the first batch."""
        if self.state == "stopped":
            job.deliver(None, f"the embedding engine is {self.state}")
            return
        self.num_waiting += len(job.inputs)
        self._queue.put(job)

    # -- engine thread -----------------------------------------------------
    def _run(self) -> None:
        stream = mx.new_stream(mx.default_device())  # created on the thread that uses it (Metal requires it)
        with mx.stream(stream):
            while not self._stopping:
                jobs = [self._queue.get()]
                while True:
                    try:
                        jobs.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                jobs = [j for j in jobs if j is not None]
                self.num_waiting -= sum(len(j.inputs) for j in jobs)
                try:
                    self._process([j for j in jobs if not j.cancelled])
                except Exception as exc:  # noqa: BLE001 - never leave a request hanging
                    self._fail(jobs, exc)
                for job in jobs:
                    self._deliver(job)
                self.num_running = 0
            mx.synchronize(stream)
        self._stopped.set()
        # Park rather than return: a thread that ran MLX work and exits can abort the
        # process at exit with MLX 0.32 (see core/engine.py).
        threading.Event().wait()

    def _process(self, jobs: list[EmbedJob]) -> None:
        items = []
        for job in jobs:
            job.results = [None] * len(job.inputs)
            items.extend((len(ids), job, i) for i, ids in enumerate(job.inputs))
        items.sort(key=lambda item: item[0])
        for group in self._groups(items):
            live = [it for it in group if it[1].error is None]
            if not live:
                continue
            self.num_running = len(live)
            try:
                vectors = self.model.embed([job.inputs[i] for _, job, i in live])
                rows = _finish(vectors, [job.dimensions for _, job, _ in live])
            except Exception as exc:  # noqa: BLE001 - fail the requests of this batch only
                self._fail([it[1] for it in live], exc)
                continue
            self.counters.steps += 1
            for (_, job, i), raw in zip(live, rows):
                job.results[i] = raw

    def _groups(self, items: list) -> list[list]:
        """Consecutive runs of the length-sorted inputs within the token and row budgets;
        an input over the budget runs alone."""
        groups: list[list] = []
        current: list = []
        for item in items:
            length = item[0]
            if current and ((len(current) + 1) * length > self.max_batch_tokens
                            or len(current) >= self.max_batch_size):
                groups.append(current)
                current = []
            current.append(item)
        if current:
            groups.append(current)
        return groups

    def _fail(self, jobs: list[EmbedJob], exc: Exception) -> None:
        message = f"embedding failed: {type(exc).__name__}: {exc}"
        log.error("%s\n%s", message, traceback.format_exc())
        self.counters.errors.append(message)
        for job in jobs:
            if job.error is None:
                job.error = message
                self.counters.requests_failed += 1

    def _deliver(self, job: EmbedJob) -> None:
        try:
            if job.cancelled:
                self.counters.requests_aborted += 1
            elif job.error is not None:
                job.deliver(None, job.error)
            else:
                job.deliver(job.results, None)
        except Exception:  # noqa: BLE001 - a broken consumer must not stop the engine
            log.exception("embedding delivery failed")


def _finish(vectors: mx.array, dimensions: list[int | None]) -> list[bytes]:
    """Truncate each row to its dimensions, L2-normalize, and return float32 LE bytes per row."""
    vectors = vectors.astype(mx.float32)
    out: list[bytes | None] = [None] * len(dimensions)
    for dim in set(dimensions):
        rows = [k for k, d in enumerate(dimensions) if d == dim]
        sub = vectors[mx.array(rows)]
        if dim is not None:
            sub = sub[:, :dim]
        sub = sub / mx.maximum(mx.linalg.norm(sub, axis=1, keepdims=True), 1e-12)
        mx.eval(sub)
        raw = bytes(memoryview(sub))
        if sys.byteorder != "little":  # the wire format is little-endian float32
            import array

            swapped = array.array("f", raw)
            swapped.byteswap()
            raw = swapped.tobytes()
        width = sub.shape[1] * 4
        for j, k in enumerate(rows):
            out[k] = raw[j * width:(j + 1) * width]
    return out


def _vocab_size(model: Any, tokenizer: Any) -> int:
    """The number of token ids the model takes (0: unknown)."""
    for size in (getattr(model, "vocab_size", None),
                 getattr(getattr(getattr(model, "model", None), "args", None), "vocab_size", None)):
        if isinstance(size, int) and size > 0:
            return size
    return len(tokenizer) if tokenizer is not None else 0


class EmbeddingError(RuntimeError):
    """The engine could not embed a request; the message says why."""


class AsyncEmbedder:
    """asyncio front of an ``EmbeddingEngine``. Shaped like ``AsyncEngine`` where the
    server reads both (``engine``, ``tokenizer``, ``metrics``, ``in_flight``)."""

    def __init__(self, engine: EmbeddingEngine):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.metrics = Metrics()
        self.in_flight = 0  # requests submitted and not yet answered (the server's 429 check)

    async def embed(self, inputs: list[list[int]], dimensions: int | None = None) -> list[bytes]:
        """One vector per input, in order: ``dimensions`` float32 values (little-endian bytes)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def settle(results, error) -> None:
            if not future.done():
                future.set_result((results, error))

        job = EmbedJob(inputs, dimensions, lambda r, e: loop.call_soon_threadsafe(settle, r, e))
        arrival = time.monotonic()
        self.in_flight += 1
        self.engine.submit(job)
        try:
            results, error = await future
        except asyncio.CancelledError:
            job.cancelled = True
            self.metrics.finish("abort")
            raise
        finally:
            self.in_flight -= 1
        if error is not None:
            self.metrics.finish("error")
            raise EmbeddingError(error)
        self.metrics.prompt_tokens += sum(len(ids) for ids in inputs)
        self.metrics.finish("stop")
        self.metrics.e2e.observe(time.monotonic() - arrival)
        return results
