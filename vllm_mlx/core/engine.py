"""The engine: one thread that owns every MLX call and runs the scheduler.

Other threads talk to it only through ``submit`` and ``abort``, which enqueue
commands; the engine applies them at the next step boundary. Each step's token
events are grouped by the sink of their request and handed over in one call per
sink, so an asyncio front end pays one ``call_soon_threadsafe`` per step, not
one per token.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field

from typing import Any, Callable

import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache

from .kv_blocks import BlockPool
from .kv_budget import GiB, kv_budget
from .kv_layers import per_token_bytes, shareable
from .request import EngineRequest, OutputSink, TokenEvent
from .scheduler import Scheduler

log = logging.getLogger("vllm_mlx.engine")


@dataclass
class EngineConfig:
    max_num_seqs: int = 64
    # New prompts prefilled together in one step; None: 32 on a GPU, 8 on the CPU. Measured on the H100
    # (docs/benchmarks/gpu.md): 32 gave +26% tok/s at 128 streams and +39% at 32 over mlx-lm's 8, since
    # every prefill step breaks BatchGenerator's decode pipelining; on the CPU, compute-bound, a bigger
    # prefill batch only makes the decode pause longer.
    prefill_batch_size: int | None = None
    prefill_step_size: int = 512
    block_size: int = 32  # tokens per KV block
    kv_cache_memory: str | float | None = None  # "8" (GiB), "512MiB", "40%"; None: the default share
    prefix_caching: bool = True
    make_cache: Callable[[], list[Any]] | None = None  # per-layer caches for one sequence (the cache policy)
    prefix_cache_dir: str | None = None  # keep cached blocks across restarts here
    cache_fingerprint: str = ""  # names the model and cache layout the stored blocks belong to
    request_timeout: float | None = None  # seconds from arrival; a request still unfinished then ends


@dataclass
class KVPlan:
    """What the engine decided about KV memory at start-up."""

    block_size: int
    capacity: int  # blocks
    budget_bytes: int
    bytes_per_token: int
    prefix_caching: bool
    why_not_sharing: str | None = None

    @property
    def capacity_tokens(self) -> int:
        return self.capacity * self.block_size


@dataclass
class EngineCounters:
    """Engine-side counters since start, read without locking (token and latency
    metrics are kept by the async front, which sees every request's whole life)."""

    requests_aborted: int = 0
    requests_failed: int = 0
    steps: int = 0
    errors: list[str] = field(default_factory=list)


class Engine:
    """Continuous-batching generation over one loaded model.

    ``submit`` may be called from any thread. Events for a request are delivered
    to its ``sink`` on the engine thread. Call ``start`` once, ``shutdown`` at the end.
    """

    def __init__(self, model, tokenizer, config: EngineConfig | None = None, vision: Any = None):
        self.model = model
        self.vision = vision  # core.vision.VisionPrefill for a vision-language model, else None
        self.tokenizer = tokenizer
        self.config = config or EngineConfig()
        self.eos_token_ids = set(getattr(tokenizer, "eos_token_ids", None) or [])
        self.vocab_size = _vocab_size(model, tokenizer)
        self.counters = EngineCounters()
        self.state = "created"
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._scheduler: Scheduler | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._stopping = False
        self._num_waiting = 0
        self._num_running = 0
        self.kv: KVPlan | None = None  # set when the engine thread has started
        self.start_error: Exception | None = None
        self.store = None  # the PrefixStore, with --prefix-cache-dir
        self.on_shutdown: Callable[[Scheduler], None] | None = None  # runs on the engine thread at shutdown

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "Engine":
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="vllm-mlx-engine", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self.start_error is not None:
            raise RuntimeError(f"engine failed to start: {self.start_error}") from self.start_error
        return self

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._commands.put(("wake", None))
        if self._thread is not None:
            self._stopped.wait(timeout)
        self.state = "stopped"

    # -- public API (any thread) --------------------------------------------
    def submit(self, request: EngineRequest) -> None:
        if self.config.request_timeout and request.deadline is None:
            request.deadline = request.arrival + self.config.request_timeout
        self._commands.put(("add", request))

    def abort(self, request_id: str) -> None:
        self._commands.put(("abort", request_id))

    @property
    def num_waiting(self) -> int:
        return self._num_waiting

    @property
    def num_running(self) -> int:
        return self._num_running

    # -- engine thread -----------------------------------------------------
    def _run(self) -> None:
        # Streams are created on the thread that uses them (Metal requires it).
        stream = mx.new_stream(mx.default_device())
        try:
            with mx.stream(stream):
                pool, make_cache = self._plan_kv()
            self._scheduler = Scheduler(
                self.model,
                self.eos_token_ids,
                max_num_seqs=self.config.max_num_seqs,
                vocab_size=self.vocab_size,
                prefill_batch_size=self.config.prefill_batch_size or default_prefill_batch_size(),
                prefill_step_size=self.config.prefill_step_size,
                stream=stream,
                pool=pool,
                make_cache=make_cache,
                prefix_caching=self.kv.prefix_caching,
                vision=self.vision,
            )
            self._scheduler.cache.disk = self.store
        except Exception as exc:  # noqa: BLE001 - a bad cache set-up must not hang start()
            self.start_error = exc
            self._ready.set()
            self._die(exc)
            self._release(stream)
            threading.Event().wait()
        self.state = "running"
        self._ready.set()
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - the loop itself broke: fail loudly, never hang
            self._die(exc)
        self._release(stream)
        # Park instead of returning: with MLX 0.32 a thread that ran MLX work and then
        # exited makes the process abort at exit about one time in three ("terminate
        # called without an active exception"); a parked daemon thread never does.
        threading.Event().wait()

    def _plan_kv(self) -> tuple[BlockPool, Callable[[], list[Any]]]:
        """Size the block pool: probe one token through the cache policy's caches to
        learn the KV bytes per token, then divide the budget into blocks."""
        cfg = self.config
        make_cache = cfg.make_cache or (lambda: make_prompt_cache(self.model))
        probe = make_cache()
        self.model(mx.array([[0]]), cache=probe)
        mx.eval([c.state for c in probe])
        per_token = per_token_bytes(probe)
        why_not = shareable(probe)
        budget = kv_budget(self.model, cfg.kv_cache_memory)
        if per_token:
            capacity = budget // (per_token * cfg.block_size)
        else:  # no per-token KV (a state-space model): nothing to page
            capacity, why_not = 1 << 40, why_not or "the model keeps no per-token KV"
        if not cfg.prefix_caching:
            why_not = "turned off"
        self.kv = KVPlan(cfg.block_size, capacity, budget, per_token, why_not is None, why_not)
        log.info("KV cache: %.2f GiB, %d blocks of %d tokens (%d tokens), %d bytes/token; prefix caching %s",
                 budget / GiB, capacity, cfg.block_size, capacity * cfg.block_size, per_token,
                 "on" if why_not is None else f"off ({why_not})")
        pool = BlockPool(capacity, cfg.block_size)
        if cfg.prefix_cache_dir and self.kv.prefix_caching:
            from .prefix_store import PrefixStore

            self.store = PrefixStore(cfg.prefix_cache_dir, cfg.cache_fingerprint, cfg.block_size)
            pool.on_evict = self.store.save
            self.on_shutdown = lambda sched: self.store.save_all(list(sched.pool.cached.values()))
        return pool, make_cache

    def kv_stats(self) -> dict[str, float]:
        """KV cache gauges and counters (read without locking; good enough for metrics)."""
        sched = self._scheduler
        if sched is None or self.kv is None:
            return {}
        pool, cache = sched.pool, sched.cache
        return {
            "blocks_total": pool.capacity,
            "blocks_working": pool.working,
            "blocks_cached": len(pool.cached),
            "usage": min(1.0, (pool.working + pool.pinned) / pool.capacity),
            "prefix_queries": cache.queries,
            "prefix_hits": cache.hits,
            "preemptions": sched.preemptions,
            "evictions": pool.evictions,
            "block_bytes": self.kv.bytes_per_token * self.kv.block_size,
        }

    def _loop(self) -> None:
        sched = self._scheduler
        while not self._stopping:
            self._apply_commands(block=not sched.has_work())
            if self._stopping or not sched.has_work():
                continue
            try:
                if self.config.request_timeout:
                    expired = sched.expire(time.monotonic())
                    if expired:
                        self._deliver(expired)
                    if not sched.has_work():
                        continue
                events = sched.step()
            except Exception as exc:  # noqa: BLE001 - keep serving after a bad step
                self._recover(exc)
                self._num_waiting = self._num_running = 0
                continue
            self.counters.steps += 1
            if events:
                self._deliver(events)
            self._num_waiting = sched.num_waiting
            self._num_running = sched.num_running

    def _die(self, exc: Exception) -> None:
        """The engine cannot go on: end every request with an error, answer new ones
        with an error at once (so nobody hangs), and report state "dead"."""
        message = f"engine failed: {type(exc).__name__}: {exc}"
        log.critical("%s\n%s", message, traceback.format_exc())
        self.state = "dead"
        self.counters.errors.append(message)
        sched = self._scheduler
        pending = sched.requests() if sched else []
        self._num_waiting = self._num_running = 0
        while True:
            by_sink: dict[int, tuple[OutputSink, list[TokenEvent]]] = {}
            for req in pending:
                ev = TokenEvent(req.request_id, None, "error", error=message)
                by_sink.setdefault(id(req.sink), (req.sink, []))[1].append(ev)
            self._hand_over(by_sink)
            if self._stopping:
                return
            cmd, arg = self._commands.get()
            pending = [arg] if cmd == "add" else []

    def _release(self, stream) -> None:
        """Finish pending MLX work, drop this thread's arrays, then tell shutdown()."""
        sched, self._scheduler = self._scheduler, None
        try:
            if sched is None:
                return
            sched.waiting.clear()
            sched.running.clear()
            sched.generator.close()
            if self.on_shutdown is not None:
                self.on_shutdown(sched)
            mx.synchronize(stream)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            log.exception("engine shutdown")
        finally:
            self._stopped.set()

    def _apply_commands(self, block: bool) -> None:
        sched = self._scheduler
        try:
            cmd, arg = self._commands.get(timeout=0.5) if block else self._commands.get_nowait()
        except queue.Empty:
            return
        while True:
            if cmd == "add":
                sched.add(arg)
            elif cmd == "abort":
                if sched.abort(arg) is not None:
                    self.counters.requests_aborted += 1
            try:
                cmd, arg = self._commands.get_nowait()
            except queue.Empty:
                break
        self._num_waiting = sched.num_waiting
        self._num_running = sched.num_running

    def _deliver(self, events: list[tuple[EngineRequest, TokenEvent]]) -> None:
        by_sink: dict[int, tuple[OutputSink, list[TokenEvent]]] = {}
        for req, ev in events:
            entry = by_sink.get(id(req.sink))
            if entry is None:
                by_sink[id(req.sink)] = (req.sink, [ev])
            else:
                entry[1].append(ev)
        self._hand_over(by_sink)

    @staticmethod
    def _hand_over(by_sink: dict[int, tuple[OutputSink, list[TokenEvent]]]) -> None:
        for sink, evs in by_sink.values():
            try:
                sink.deliver(evs)
            except Exception:  # noqa: BLE001 - a broken consumer must not stop the engine
                log.exception("output sink failed")

    def _recover(self, exc: Exception) -> None:
        message = f"engine step failed: {type(exc).__name__}: {exc}"
        log.error("%s\n%s", message, traceback.format_exc())
        self.counters.errors.append(message)
        dropped = self._scheduler.fail_all()
        self.counters.requests_failed += len(dropped)
        by_sink: dict[int, tuple[OutputSink, list[TokenEvent]]] = {}
        for req in dropped:
            ev = TokenEvent(req.request_id, None, "error", error=message)
            by_sink.setdefault(id(req.sink), (req.sink, []))[1].append(ev)
        self._hand_over(by_sink)


def default_prefill_batch_size() -> int:
    return 32 if mx.default_device().type == mx.DeviceType.gpu else 8


def _vocab_size(model, tokenizer) -> int:
    args = getattr(model, "args", None)
    size = getattr(args, "vocab_size", None)
    if isinstance(size, int) and size > 0:
        return size
    return len(tokenizer)
