"""The engine in a process of its own (``vllm-mlx serve --engine-process``).

In one process the engine thread and the HTTP event loop share one interpreter
lock: on a GPU, where a decode step is host-bound, every token the event loop
detokenizes, parses and writes to a socket is time the engine thread waits to
queue its next step (measured on the H100: the HTTP server reached 0.78-0.89x of
the in-process engine from 8 streams up). ``EngineProcess`` runs the ``Engine``
in a child process and stands in for it in the server process: the same
``submit`` / ``abort`` / sink interface, ``kv``, ``kv_stats()``, counters and
state, so ``AsyncEngine`` and the routes do not know the difference.

Traffic over one pipe (a socketpair), msgpack-encoded, never pickled after start:
requests go down as token ids and sampling settings (a structured-output
grammar as its source, compiled again in the child), and each engine step's
token events come up in one message. The child learns nothing about HTTP; the
server process keeps the tokenizer (chat templates, detokenizing, parsing).

If the child dies, every open request ends with an error event, the state reads
"dead" (``/health`` answers 503) and new requests fail at once: nobody hangs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from dataclasses import asdict, fields
from typing import Any, Callable

import msgspec

from .engine import EngineCounters, KVPlan
from .params import SamplingParams
from .request import EngineRequest, OutputSink, TokenEvent, TokenLogprob

log = logging.getLogger("vllm_mlx.engine")

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode
STATUS_INTERVAL = 0.25  # seconds between the child's status reports (health, metrics)
_PARAM_FIELDS = [f.name for f in fields(SamplingParams) if f.name != "guide"]


# -- wire format ----------------------------------------------------------------
def _request_payload(req: EngineRequest) -> list:
    p = req.params
    params = {name: getattr(p, name) for name in _PARAM_FIELDS}
    params["grammar"] = getattr(p.guide, "grammar", None) if p.guide is not None else None
    if p.guide is not None and params["grammar"] is None:
        raise ValueError("this guide cannot cross to the engine process (no grammar source)")
    return [req.request_id, req.prompt_ids, params, req.arrival, req.deadline]


def _event_payload(ev: TokenEvent) -> list:
    lp = ev.logprob
    return [ev.request_id, ev.token_id, ev.finish_reason,
            None if lp is None else [lp.token_id, lp.logprob, [list(t) for t in lp.top]],
            ev.error, ev.cached_tokens]


def _event_from(item: list) -> TokenEvent:
    rid, token, finish, lp, error, cached = item
    logprob = None if lp is None else TokenLogprob(lp[0], lp[1], [tuple(t) for t in lp[2]])
    return TokenEvent(rid, token, finish, logprob=logprob, error=error, cached_tokens=cached)


# -- the server-process side -----------------------------------------------------
class EngineProcess:
    """Duck-types ``Engine`` for ``AsyncEngine`` and the routes; the engine runs in a child.

    ``factory`` is a picklable callable that builds (does not start) the ``Engine`` in
    the child, loading the model there. ``tokenizer``, ``vocab_size`` and
    ``eos_token_ids`` are the server process's own copies.
    """

    def __init__(self, factory: Callable[[], Any], tokenizer: Any, vocab_size: int, eos_token_ids: set[int],
                 log_level: str = "INFO", start_timeout: float = 600.0):
        self.factory = factory
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.eos_token_ids = set(eos_token_ids)
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.counters = EngineCounters()
        self.state = "created"
        self.kv: KVPlan | None = None
        self.num_waiting = 0
        self.num_running = 0
        self._kv_stats: dict[str, float] = {}
        self._sinks: dict[str, OutputSink] = {}
        self._lock = threading.Lock()  # guards _sinks and sends on the pipe
        self._conn = None
        self._proc = None
        self._reader: threading.Thread | None = None
        self._stopped = threading.Event()
        self._dead_message: str | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "EngineProcess":
        ctx = multiprocessing.get_context("spawn")  # fork would copy MLX state and threads: never safe
        parent, child = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(target=_child_main, args=(child, self.factory, self.log_level),
                                 name="vllm-mlx-engine", daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(self.start_timeout):
            self._kill()
            raise RuntimeError(f"the engine process did not start within {self.start_timeout:.0f} s")
        try:
            kind, body = _decode(parent.recv_bytes())
        except (EOFError, OSError):
            self._proc.join(5)
            raise RuntimeError(f"the engine process exited while starting (exit code {self._proc.exitcode})") \
                from None
        if kind != "ready":
            self._kill()
            raise RuntimeError(f"engine failed to start: {body}")
        self.kv = KVPlan(**body["kv"])
        self.state = "running"
        log.info("engine process %d running", self._proc.pid)
        self._reader = threading.Thread(target=self._read, name="vllm-mlx-engine-reader", daemon=True)
        self._reader.start()
        return self

    def shutdown(self, timeout: float = 10.0) -> None:
        if self._proc is None or self.state in ("stopped", "created"):
            self.state = "stopped"
            return
        try:
            self._send(["shutdown", timeout])
        except (OSError, ValueError):
            pass
        self._stopped.wait(timeout + 5)
        self._proc.join(5)
        if self._proc.is_alive():
            self._kill()
        self.state = "stopped"

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()

    # -- public API (any thread) --------------------------------------------
    def submit(self, request: EngineRequest) -> None:
        try:
            payload = _request_payload(request)
        except ValueError as exc:
            request.sink.deliver([TokenEvent(request.request_id, None, "error", error=str(exc))])
            return
        with self._lock:
            dead = self._dead_message
            if dead is None:
                self._sinks[request.request_id] = request.sink
                try:
                    self._conn.send_bytes(_encode(["add", payload]))
                    return
                except (OSError, ValueError) as exc:
                    self._sinks.pop(request.request_id, None)
                    dead = f"engine process unreachable: {exc}"
        request.sink.deliver([TokenEvent(request.request_id, None, "error", error=dead)])

    def abort(self, request_id: str) -> None:
        try:
            self._send(["abort", request_id])
        except (OSError, ValueError):
            pass

    def kv_stats(self) -> dict[str, float]:
        return dict(self._kv_stats)

    def _send(self, message: list) -> None:
        with self._lock:
            self._conn.send_bytes(_encode(message))

    # -- the reader thread ---------------------------------------------------
    def _read(self) -> None:
        conn = self._conn
        while True:
            try:
                kind, body = _decode(conn.recv_bytes())
            except (EOFError, OSError):
                break
            if kind == "events":
                self._dispatch([_event_from(item) for item in body])
            elif kind == "status":
                self._status(body)
            elif kind == "bye":
                self._stopped.set()
                return
        self._stopped.set()
        if self.state != "stopped":
            code = self._proc.exitcode if self._proc is not None else None
            self._die(f"engine process exited unexpectedly (exit code {code})")

    def _dispatch(self, events: list[TokenEvent]) -> None:
        by_sink: dict[int, tuple[OutputSink, list[TokenEvent]]] = {}
        with self._lock:
            for ev in events:
                sink = self._sinks.get(ev.request_id)
                if sink is None:
                    continue
                if ev.finish_reason is not None:
                    del self._sinks[ev.request_id]
                by_sink.setdefault(id(sink), (sink, []))[1].append(ev)
        for sink, evs in by_sink.values():
            try:
                sink.deliver(evs)
            except Exception:  # noqa: BLE001 - a broken consumer must not stop the reader
                log.exception("output sink failed")

    def _status(self, body: dict) -> None:
        self.num_waiting, self.num_running = body["waiting"], body["running"]
        c = self.counters
        c.steps, c.requests_aborted, c.requests_failed = body["steps"], body["aborted"], body["failed"]
        c.errors[:] = body["errors"]
        self._kv_stats = body["kv"]
        if body["state"] == "dead" and self.state == "running":
            self.state = "dead"

    def _die(self, message: str) -> None:
        log.critical(message)
        with self._lock:
            self._dead_message = message
            sinks, self._sinks = self._sinks, {}
        self.state = "dead"
        self.counters.errors.append(message)
        self.num_waiting = self.num_running = 0
        for rid, sink in sinks.items():
            try:
                sink.deliver([TokenEvent(rid, None, "error", error=message)])
            except Exception:  # noqa: BLE001
                log.exception("output sink failed")


# -- the child process -------------------------------------------------------------
class _QueueSink:
    """The child's one sink: every step's events go to the sender thread."""

    def __init__(self, out: queue.SimpleQueue):
        self.out = out

    def deliver(self, events: list[TokenEvent]) -> None:
        self.out.put(events)


def _child_main(conn, factory: Callable[[], Any], log_level: str) -> None:
    # Ctrl-C (and a service manager's SIGTERM) reach the whole process group: the server process decides
    # when the engine stops, and its going away (EOF on the pipe) stops this process too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s[engine]: %(message)s")
    try:
        engine = factory()
        engine.start()
    except BaseException as exc:  # noqa: BLE001 - report why, then exit
        log.exception("engine process failed to start")
        conn.send_bytes(_encode(["error", f"{type(exc).__name__}: {exc}"]))
        conn.close()
        os._exit(1)
    conn.send_bytes(_encode(["ready", {"kv": asdict(engine.kv)}]))
    out: queue.SimpleQueue = queue.SimpleQueue()
    sink = _QueueSink(out)
    sender = threading.Thread(target=_send_loop, args=(conn, engine, out), name="vllm-mlx-sender", daemon=True)
    sender.start()
    compiler = None
    while True:
        try:
            kind, body = _decode(conn.recv_bytes())
        except (EOFError, OSError):  # the server process is gone: stop
            engine.shutdown(5)
            os._exit(0)
        if kind == "add":
            rid, prompt_ids, params, arrival, deadline = body
            grammar = params.pop("grammar")
            p = SamplingParams(**params)
            if grammar is not None:
                if compiler is None:
                    from .guided import GrammarCompiler

                    compiler = GrammarCompiler(engine.tokenizer, engine.vocab_size, engine.eos_token_ids)
                try:
                    p.guide = compiler.compile(grammar)
                except Exception as exc:  # noqa: BLE001 - compiled fine in the server; report, do not die
                    out.put([TokenEvent(rid, None, "error", error=f"grammar: {exc}")])
                    continue
            engine.submit(EngineRequest(rid, prompt_ids, p, sink, arrival=arrival, deadline=deadline))
        elif kind == "abort":
            engine.abort(body)
        elif kind == "shutdown":
            engine.shutdown(body)
            out.put(None)
            sender.join(10)
            os._exit(0)


def _send_loop(conn, engine, out: queue.SimpleQueue) -> None:
    """Forward events as they come (all that queued up, in one message) and a status
    report every ``STATUS_INTERVAL`` seconds."""
    next_status = 0.0
    while True:
        try:
            first = out.get(timeout=STATUS_INTERVAL)
        except queue.Empty:
            first = []
        done = first is None
        events = [] if done else list(first)
        while not done:
            try:
                more = out.get_nowait()
            except queue.Empty:
                break
            if more is None:
                done = True
            else:
                events.extend(more)
        try:
            if events:
                conn.send_bytes(_encode(["events", [_event_payload(ev) for ev in events]]))
            now = time.monotonic()
            if done or now >= next_status:
                next_status = now + STATUS_INTERVAL
                c = engine.counters
                conn.send_bytes(_encode(["status", {
                    "waiting": engine.num_waiting, "running": engine.num_running, "state": engine.state,
                    "steps": c.steps, "aborted": c.requests_aborted, "failed": c.requests_failed,
                    "errors": list(c.errors[-20:]), "kv": engine.kv_stats()}]))
            if done:
                conn.send_bytes(_encode(["bye", None]))
                return
        except (OSError, ValueError):
            return
