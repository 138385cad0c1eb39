"""The lockstep engine: every rank runs the same continuous-batching schedule.

Ranks that disagree about the batch raise nothing: their collectives pair up and
they silently compute garbage. So every rank keeps an identical scheduler, and
everything that changes it is either decided on rank 0 and sent, or computed
identically from identical inputs:

* arrivals, cancellations and deadline expiries happen on rank 0 (HTTP lives
  there); at the start of a step rank 0 turns what came in into one payload
  (JSON: token ids and sampling parameters, never pickle) that every rank
  applies in the same order;
* admission, prefix-cache hits, preemption and stops are pure functions of the
  scheduler state, the KV capacity (the smallest of all ranks', agreed at start)
  and the sampled tokens, which are identical because the logits are;
* sampling draws from the same PRNG on every rank: the global key is seeded with
  a value rank 0 sends at start, per-request seeds give per-request keys.

Each step opens with one small collective (``all_sum`` of an int32 vector: rank
0's step number, flags and payload size, plus every rank's own step number and
a hash chained over every token event so far); a second carries the payload,
only when there is one. A mismatch stops the group loudly: requests end with an
error, ``/health`` answers 503, the process exits non-zero. Both collectives
run on the engine's one MLX stream, the model's: collectives on another stream
pair up with the model's in-flight ``all_sum``s (garbage again).

Liveness: a peer that dies makes the next collective raise (ring: "connection
to a peer was lost") and closes its doorbell socket (seen at once, even while
idle); a peer that hangs blocks collectives forever (MLX has no timeout), so a
watchdog ends the group when a step makes no progress for ``timeout`` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import sys
import threading
import time
import zlib
from typing import Any

import mlx.core as mx
import numpy as np

from ..core.engine import Engine, EngineConfig
from ..core.kv_blocks import BlockPool
from ..core.params import SamplingParams
from ..core.request import EngineRequest, OutputSink, TokenEvent
from ..core.scheduler import _timeout_event
from .doorbell import Doorbell
from .group import DistributedError, rank0_host

log = logging.getLogger("vllm_mlx.distributed")

STOP = 1
EXIT_CODE = 3  # the process exits with this when the group failed
DESYNC_ENV = "VLLM_MLX_TEST_DESYNC"  # tests only: "RANK:STEP" corrupts that rank's state hash at that step
_INT32_MAX = 2**31 - 1


class Desync(RuntimeError):
    pass


class _NullSink:
    """Ranks other than 0 serve nobody: their events are dropped."""

    def deliver(self, events: list[TokenEvent]) -> None:
        pass


NULL_SINK: OutputSink = _NullSink()


class LockstepEngine(Engine):
    """An ``Engine`` whose every step is agreed with the other ranks of ``group``."""

    def __init__(self, model, tokenizer, config: EngineConfig | None = None, *, group, timeout: float = 60.0,
                 fingerprint: str = "", exit_grace: float = 2.0):
        super().__init__(model, tokenizer, config)
        self.group = group
        self.rank, self.size = group.rank(), group.size()
        self.timeout = timeout
        self.exit_grace = exit_grace
        self.fingerprint = zlib.crc32(fingerprint.encode()) & _INT32_MAX
        self.doorbell = Doorbell(self.rank, self.size, timeout)
        self.exit_code: int | None = None
        self._stream = None
        self._step_no = 0
        self._hash = 0
        self._busy_since: float | None = None
        self._inbox: list[tuple[str, Any]] = []
        self._live: dict[str, EngineRequest] = {}  # rank 0: submitted, not finished yet
        self._live_lock = threading.Lock()
        self._fatal_lock = threading.Lock()
        self._desync = _desync_hook(self.rank)
        self._compiler = None  # compiles structured-output grammars on ranks other than 0

    # -- any thread ------------------------------------------------------------
    def submit(self, request: EngineRequest) -> None:
        problem = None
        if self.state in ("dead", "stopping", "stopped"):
            problem = f"the distributed group is down: {self._last_error()}"
        elif request.params.guide is not None and getattr(request.params.guide, "grammar", None) is None:
            problem = "this guided-decoding processor cannot be sent to the other ranks of a distributed group"
        elif request.mm is not None:
            problem = "images are not supported with distributed serving"
        if problem is not None:
            request.sink.deliver([TokenEvent(request.request_id, None, "error", error=problem)])
            return
        with self._live_lock:
            self._live[request.request_id] = request
        super().submit(request)

    def _last_error(self) -> str:
        return self.counters.errors[-1] if self.counters.errors else "stopped"

    # -- start-up (engine thread) ------------------------------------------------
    def _plan_kv(self):
        pool, make_cache = super()._plan_kv()
        self._stream = mx.default_stream(mx.default_device())  # the engine's stream (we run inside it)
        if self.config.prefix_cache_dir:
            raise DistributedError("--prefix-cache-dir is not supported with distributed serving")
        self._start_watchdog()
        size = self.size
        hello = np.zeros(6 + 2 * size, dtype=np.int32)
        if self.rank == 0:
            host = rank0_host() or socket.gethostbyname(socket.gethostname())
            hello[0] = random.SystemRandom().randrange(_INT32_MAX)
            hello[1] = self.doorbell.listen()
            hello[2:6] = [int(x) for x in socket.gethostbyname(host).split(".")]
        hello[6 + self.rank] = min(pool.capacity, _INT32_MAX)
        hello[6 + size + self.rank] = self.fingerprint
        self._busy_since = time.monotonic()
        out = self._all_sum(hello)
        self._busy_since = None
        fingerprints = out[6 + size:].tolist()
        if len(set(fingerprints)) > 1:
            raise DistributedError("the ranks differ in model, options or versions (fingerprints "
                                   f"{fingerprints}): run the same model files, command line and versions of "
                                   "mlx, mlx-lm and vllm-mlx on every machine")
        capacity = int(out[6:6 + size].min())
        if capacity < pool.capacity:
            log.info("KV cache: %d blocks, the smallest of all ranks (this rank could hold %d)",
                     capacity, pool.capacity)
            pool = BlockPool(capacity, pool.block_size)
            self.kv.capacity = capacity
        mx.random.seed(int(out[0]))  # the same sampling key chain on every rank
        if self.rank == 0:
            self.doorbell.accept_all()
        else:
            rank0 = rank0_host() or ".".join(str(int(x)) for x in out[2:6])
            self.doorbell.connect(rank0, int(out[1]))
        log.info("rank %d of %d joined the lockstep group", self.rank, size)
        return pool, make_cache

    # -- the loop (engine thread) ---------------------------------------------------
    def _loop(self) -> None:
        sched = self._scheduler
        if self.rank == 0:
            self.doorbell.watch_peers(self._fatal)
        while True:
            if not sched.has_work():
                self._busy_since = None
                if self.rank == 0:
                    self._wait_for_commands()
                    self.doorbell.ring()
                else:
                    self.doorbell.wait()
            self._busy_since = time.monotonic()
            if self._sync(sched):
                break
            if sched.has_work():
                events = sched.step()
                self.counters.steps += 1
                self._fold(events)
                if self.rank == 0 and events:
                    self._finished(events)
                    self._deliver(events)
            self._num_waiting = sched.num_waiting
            self._num_running = sched.num_running
        self._busy_since = None
        self.state = "stopping"
        self.doorbell.close()
        with self._live_lock:
            live, self._live = list(self._live.values()), {}
        self._error_all(live, "the server is shutting down")

    def _wait_for_commands(self) -> None:
        import queue

        while not self._stopping:
            try:
                self._inbox.append(self._commands.get(timeout=0.5))
                return
            except queue.Empty:
                continue

    def _sync(self, sched) -> bool:
        """The per-step agreement; returns True when the group stops."""
        payload, originals = b"", {}
        flags = 0
        if self.rank == 0:
            payload, originals = self._payload(sched)
            if self._stopping:
                flags |= STOP
                self.state = "stopping"  # before the others see STOP and exit: their leaving is no failure
        self._step_no += 1
        size = self.size
        header = np.zeros(3 + 2 * size, dtype=np.int32)
        if self.rank == 0:
            header[:3] = [self._step_no, flags, len(payload)]
        header[3 + self.rank] = self._step_no
        header[3 + size + self.rank] = self._hash ^ (1 if self._desync == self._step_no else 0)
        out = self._all_sum(header)
        steps, hashes = out[3:3 + size].tolist(), out[3 + size:].tolist()
        if any(s != out[0] for s in steps) or len(set(hashes)) > 1:
            raise Desync(f"ranks out of lockstep at step {int(out[0])}: step numbers {steps}, state hashes "
                         f"{hashes} (a rank computed something different)")
        if out[1] & STOP:
            self.state = "stopping"
            return True
        if out[2]:
            buf = np.frombuffer(payload, dtype=np.uint8) if self.rank == 0 else np.zeros(int(out[2]), np.uint8)
            data = self._all_sum(buf).astype(np.uint8).tobytes()
            self._apply(sched, json.loads(data), originals)
        return False

    def _payload(self, sched) -> tuple[bytes, dict[str, EngineRequest]]:
        import queue

        while True:
            try:
                self._inbox.append(self._commands.get_nowait())
            except queue.Empty:
                break
        ops, originals = [], {}
        for cmd, arg in self._inbox:
            if cmd == "add":
                originals[arg.request_id] = arg
                guide = arg.params.guide.grammar if arg.params.guide is not None else None
                ops.append(["add", arg.request_id, arg.prompt_ids, _encode_params(arg.params), guide])
            elif cmd == "abort":
                ops.append(["abort", arg])
        self._inbox = []
        if self.config.request_timeout:
            now = time.monotonic()
            ops += [["expire", r.request_id] for r in sched.requests()
                    if r.deadline is not None and now > r.deadline]
        if not ops:
            return b"", originals
        return json.dumps(ops, separators=(",", ":")).encode(), originals

    def _apply(self, sched, ops: list, originals: dict[str, EngineRequest]) -> None:
        """Apply rank 0's decisions, in its order, on every rank."""
        expired = []
        for op in ops:
            if op[0] == "add":
                _, rid, prompt, params, grammar = op
                req = originals.get(rid)
                if req is None:
                    params = _decode_params(params)
                    if grammar is not None:  # structured output: the same grammar, compiled here
                        params.guide = self._grammar().compile(grammar)
                    req = EngineRequest(rid, prompt, params, NULL_SINK)
                sched.add(req)
            elif op[0] == "abort":
                if sched.abort(op[1]) is not None:
                    self.counters.requests_aborted += 1
                self._forget(op[1])
            elif op[0] == "expire":
                req = sched.abort(op[1])
                if req is not None and self.rank == 0:
                    expired.append((req, _timeout_event(req)))
                self._forget(op[1])
        if expired:
            self._deliver(expired)
        self._fold([], extra=len(ops))

    def _grammar(self):
        if self._compiler is None:
            from ..core.guided import GrammarCompiler

            self._compiler = GrammarCompiler(self.tokenizer, self.vocab_size, self.eos_token_ids)
        return self._compiler

    def _forget(self, request_id: str) -> None:
        if self.rank == 0:
            with self._live_lock:
                self._live.pop(request_id, None)

    def _finished(self, events) -> None:
        with self._live_lock:
            for _, ev in events:
                if ev.finish_reason is not None:
                    self._live.pop(ev.request_id, None)

    def _fold(self, events, extra: int = 0) -> None:
        """Chain this step's outcome into the state hash every rank compares next step."""
        sched = self._scheduler
        summary = [[ev.request_id, ev.token_id, ev.finish_reason] for _, ev in events]
        summary.append([sched.num_running, sched.num_waiting, sched.pool.working, len(sched.pool.cached), extra])
        self._hash = zlib.crc32(json.dumps(summary).encode(), self._hash) & _INT32_MAX

    def _all_sum(self, values: np.ndarray) -> np.ndarray:
        with mx.stream(self._stream):
            out = mx.distributed.all_sum(mx.array(values), group=self.group)
            mx.eval(out)
        return np.array(out)

    # -- failure ------------------------------------------------------------------
    def _die(self, exc: Exception) -> None:
        if self.state == "created":  # a start-up error: start() raises it and the command exits
            return
        self._fatal(f"{type(exc).__name__}: {exc}")
        threading.Event().wait()  # park: the process exits from _fatal's timer

    def _fatal(self, reason: str) -> None:
        """The group cannot go on: fail every request, report "dead" (/health 503), exit non-zero soon."""
        with self._fatal_lock:
            if self.state in ("dead", "stopping", "stopped"):
                return
            self.state = "dead"
        message = f"distributed group failed on rank {self.rank}: {reason}"
        log.critical("%s; exiting with status %d in %g s", message, EXIT_CODE, self.exit_grace)
        self.counters.errors.append(message)
        self.exit_code = EXIT_CODE
        with self._live_lock:
            live, self._live = list(self._live.values()), {}
        self.counters.requests_failed += len(live)
        self._num_waiting = self._num_running = 0
        self._error_all(live, message)
        threading.Thread(target=self._exit_later, name="vllm-mlx-exit", daemon=True).start()

    def _error_all(self, requests: list[EngineRequest], message: str) -> None:
        by_sink: dict[int, tuple[OutputSink, list[TokenEvent]]] = {}
        for req in requests:
            ev = TokenEvent(req.request_id, None, "error", error=message)
            by_sink.setdefault(id(req.sink), (req.sink, []))[1].append(ev)
        self._hand_over(by_sink)

    def _exit_later(self) -> None:
        time.sleep(self.exit_grace)  # clients receive their errors, /health reads 503 meanwhile
        self.doorbell.close()
        logging.shutdown()
        sys.stderr.flush()
        os._exit(EXIT_CODE)

    def _start_watchdog(self) -> None:
        def run():
            while self.state not in ("dead", "stopping", "stopped"):
                time.sleep(min(1.0, self.timeout / 4))
                since = self._busy_since
                if since is not None and time.monotonic() - since > self.timeout:
                    self._fatal(f"no progress for {self.timeout:g} s (--distributed-timeout): a rank hung or "
                                "the link stalled")
                    return

        threading.Thread(target=run, name="vllm-mlx-watchdog", daemon=True).start()

    def wait_stopped(self) -> int:
        """Ranks other than 0: block until the group stops; the exit status."""
        while not self._stopped.wait(1.0):
            pass
        return self.exit_code or 0


def _encode_params(params: SamplingParams) -> dict:
    out = {name: getattr(params, name) for name in params.__slots__ if name != "guide"}
    if params.logit_bias:
        out["logit_bias"] = [[int(k), float(v)] for k, v in params.logit_bias.items()]
    return out


def _decode_params(data: dict) -> SamplingParams:
    if data.get("logit_bias"):
        data["logit_bias"] = {int(k): float(v) for k, v in data["logit_bias"]}
    return SamplingParams(**data)


def _desync_hook(rank: int) -> int | None:
    spec = os.environ.get(DESYNC_ENV)
    if not spec:
        return None
    want_rank, _, step = spec.partition(":")
    return int(step) if int(want_rank) == rank else None
