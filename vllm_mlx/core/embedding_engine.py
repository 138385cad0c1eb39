"""The embedding engine: one thread owns every MLX call of an embedding model.

Requests are queued; between batches the thread moves their inputs into one
pool and runs the next batch from it (see ``EmbeddingEngine``). A request gets
its vectors once all its inputs have run: truncated to the dimensions it asked
for, L2-normalized, as little-endian float32 bytes (what ``base64`` carries, and
cheap to turn into floats off this thread). ``AsyncEmbedder`` is the asyncio front.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import queue
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import mlx.core as mx

from .device_turns import maybe_turn
from .engine import EngineCounters
from .metrics import Metrics

log = logging.getLogger("vllm_mlx.engine")

Deliver = Callable[[list[bytes] | None, str | None], None]  # (vectors, error), called on the engine thread


@dataclass
class EmbedJob:
    inputs: list[list[int]]
    dimensions: int | None
    deliver: Deliver
    cancelled: bool = False  # the client left: its inputs not yet run are dropped
    results: list[bytes | None] = field(default_factory=list)
    remaining: int = 0
    error: str | None = None
    done: bool = False  # delivered (or dropped)


@dataclass(order=True)
class _Item:
    length: int
    seq: int  # arrival order across all jobs
    job: EmbedJob = field(compare=False)
    index: int = field(compare=False)
    taken: bool = field(default=False, compare=False)  # left the pool (run, or dropped)


class EmbeddingEngine:
    """Batches embedding requests on its own thread. ``submit`` may be called from any thread.

    Inputs of all waiting requests form one pool, kept sorted by length. Each batch
    holds the oldest waiting input plus its neighbours in length, as many as the
    token budget (rows x longest input, padding included) and row limit allow;
    new requests join the pool between batches. So a short query arriving during
    a bulk job rides along in the next batch instead of waiting for the whole
    job, and the oldest input always makes progress.
    """

    def __init__(self, model: Any, tokenizer: Any = None, *, max_batch_tokens: int = 8192,
                 max_batch_size: int = 64, device: Any = None, name: str = "embed"):
        self.model = model
        self.device = device  # core.device_turns.DeviceTurns shared with the server's other engines
        self.name = name
        self.tokenizer = tokenizer
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.vocab_size = _vocab_size(model, tokenizer)
        self.counters = EngineCounters()
        self.state = "created"
        self.num_waiting = 0  # inputs waiting for a batch
        self.num_running = 0  # inputs in the batch being run
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stopped = threading.Event()
        self._seq = 0
        self._arrivals: deque[_Item] = deque()  # the pool's items in arrival order (taken ones skipped)

    def kv_stats(self) -> dict:
        return {}  # no KV cache kept between requests

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "EmbeddingEngine":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"vllm-mlx-embed-{self.name}", daemon=True)
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
        """Queue a job; jobs queued before ``start`` are all in the pool for the first batch."""
        if self.state == "stopped":
            job.deliver(None, f"the embedding engine is {self.state}")
            return
        self._queue.put(job)

    # -- engine thread -----------------------------------------------------
    def _run(self) -> None:
        stream = mx.new_stream(mx.default_device())  # created on the thread that uses it (Metal requires it)
        pool: list[_Item] = []
        with mx.stream(stream):
            while not self._stopping:
                self._take(pool, block=not pool)
                self.num_waiting = len(pool)
                batch = [it for it in self._next_batch(pool) if not self._dropped(it.job)] if pool else []
                if batch:
                    self._run_batch(batch)
                self.num_waiting, self.num_running = len(pool), 0
            mx.synchronize(stream)
        self._stopped.set()
        # Park rather than return: a thread that ran MLX work and exits can abort the
        # process at exit with MLX 0.32 (see core/engine.py).
        threading.Event().wait()

    def _take(self, pool: list[_Item], block: bool) -> None:
        """Move queued jobs' inputs into the pool (waiting for one when ``block``)."""
        try:
            job = self._queue.get() if block else self._queue.get_nowait()
        except queue.Empty:
            return
        added = False
        while True:
            if job is not None and not job.inputs:
                job.done = True
                self._deliver(job, [], None)
            elif job is not None:
                job.results, job.remaining = [None] * len(job.inputs), len(job.inputs)
                for i, ids in enumerate(job.inputs):
                    item = _Item(len(ids), self._seq, job, i)
                    pool.append(item)
                    self._arrivals.append(item)
                    self._seq += 1
                added = True
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
        if added:
            pool.sort()

    def _dropped(self, job: EmbedJob) -> bool:
        """A cancelled or failed job's waiting inputs leave the pool."""
        if job.cancelled and not job.done:
            job.done = True
            self.counters.requests_aborted += 1
        return job.done

    def _next_batch(self, pool: list[_Item]) -> list[_Item]:
        """Remove and return the next batch: the oldest input and its neighbours in
        length (``pool`` is sorted by length), shorter ones first, within the budgets."""
        while self._arrivals[0].taken:
            self._arrivals.popleft()
        lo = hi = bisect.bisect_left(pool, self._arrivals[0])
        while hi - lo + 1 < self.max_batch_size:
            rows = hi - lo + 2
            if lo > 0 and rows * pool[hi].length <= self.max_batch_tokens:
                lo -= 1
            elif hi + 1 < len(pool) and rows * pool[hi + 1].length <= self.max_batch_tokens:
                hi += 1
            else:
                break
        batch = pool[lo:hi + 1]
        del pool[lo:hi + 1]
        for it in batch:
            it.taken = True
        return batch

    def _run_batch(self, batch: list[_Item]) -> None:
        self.num_running = len(batch)
        try:
            with maybe_turn(self.device, self.name):  # one batch is one turn on a shared device
                vectors = self.model.embed([it.job.inputs[it.index] for it in batch])
                rows = _finish(vectors, [it.job.dimensions for it in batch])
        except Exception as exc:  # noqa: BLE001 - fail the requests of this batch only
            self._fail({id(it.job): it.job for it in batch}.values(), exc)
            return
        self.counters.steps += 1
        for it, raw in zip(batch, rows):
            job = it.job
            job.results[it.index] = raw
            job.remaining -= 1
            if job.remaining == 0 and not job.done:
                job.done = True
                self._deliver(job, job.results, None)

    def _fail(self, jobs, exc: Exception) -> None:
        message = f"embedding failed: {type(exc).__name__}: {exc}"
        log.error("%s\n%s", message, traceback.format_exc())
        self.counters.errors.append(message)
        for job in jobs:
            if not job.done:
                job.done, job.error = True, message
                self.counters.requests_failed += 1
                self._deliver(job, None, message)

    @staticmethod
    def _deliver(job: EmbedJob, results: list[bytes] | None, error: str | None) -> None:
        try:
            job.deliver(results, error)
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
