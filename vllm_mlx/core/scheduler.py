"""Continuous-batching scheduler on top of mlx-lm's BatchGenerator.

BatchGenerator already does what a step needs: one decode step for every
running sequence, then one chunk (``prefill_step_size`` tokens) of prompt
processing for newly admitted ones, so long prompts are prefilled in slices
interleaved with decode steps and running streams keep flowing. Finished
sequences leave the batch inside ``next()`` and ``remove()`` drops cancelled
ones at once.

What we keep ourselves, and why:

* admission: requests wait here, not inside BatchGenerator, so the number of
  sequences in flight (``max_num_seqs``) and KV memory (the block pool of
  ``kv_blocks``) decide who runs; a request whose prefix another running request
  is still prefilling waits for those blocks instead of computing them again;
* prefix caching (``prefix_cache``): a new request starts from the cached KV of
  its longest cached prefix, and finished prompts and sequences leave their full
  blocks behind;
* preemption: when a running sequence needs a block and none can be freed, the
  newest sequence leaves the batch (its full blocks go to the cache) and goes
  back to the head of the line with what it generated so far, to resume by
  recomputation, which the cache makes cheap;
* the mapping from BatchGenerator uids to our requests, so events carry our ids
  and aborted requests' late tokens are dropped;
* log-probabilities: BatchGenerator hands out the full-vocabulary vector of each
  sampled token; we reduce it to the chosen token and its top-k alternatives in
  one batched computation per step, only for requests that asked.

All methods run on the engine thread.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import mlx.core as mx
from mlx_lm.generate import BatchGenerator, StopSequences

from .guard import Failure, guard
from .kv_blocks import BlockPool
from .prefix_cache import PrefixCache, extend_hashes
from .request import EngineRequest, TokenEvent, TokenLogprob
from .sampling import make_logits_processors, make_sampler, rewind

log = logging.getLogger("vllm_mlx.scheduler")


@dataclass(eq=False)
class _Seq:
    """Scheduler state of one request, kept across preemptions."""

    req: EngineRequest
    tokens: list[int]  # what gets prefilled: the prompt, plus output generated before a preemption
    sampler: Any
    processors: list
    stops: StopSequences
    hashes: list[bytes] = field(default_factory=list)  # of tokens' full blocks
    generated: int = 0  # tokens generated in all
    new_tokens: list[int] = field(default_factory=list)  # generated since the last admission
    working: int = 0  # blocks reserved
    prompt_done: bool = False
    cached_tokens: int | None = None  # reported with the first token
    uid: int | None = None
    order: int = 0
    failure: Failure = field(default_factory=Failure)  # set when its sampler or a processor raised
    hit_tokens: int = 0  # of ``tokens``, already in ``caches`` at the last admission (cache hit + vision prefill)
    reused_tokens: int = 0  # of those, served from the prefix cache
    caches: list | None = None  # handed to BatchGenerator at insertion


class Scheduler:
    def __init__(
        self,
        model,
        eos_token_ids: set[int],
        *,
        max_num_seqs: int = 64,
        vocab_size: int = 0,
        prefill_batch_size: int = 8,
        prefill_step_size: int = 512,
        stream: mx.Stream | None = None,
        pool: BlockPool | None = None,
        make_cache: Callable[[], list[Any]] | None = None,
        prefix_caching: bool = True,
        vision: Any = None,
    ):
        self.model = model
        self.eos_token_ids = set(eos_token_ids)
        self.max_num_seqs = max_num_seqs
        self.vocab_size = vocab_size
        self.stream = stream
        self._make_generator = lambda: BatchGenerator(
            model,
            completion_batch_size=max_num_seqs,
            prefill_batch_size=min(prefill_batch_size, max_num_seqs),
            prefill_step_size=prefill_step_size,
            stream=stream,
        )
        self.generator = self._make_generator()
        self.vision = vision  # a core.vision.VisionPrefill for vision-language models
        self.pool = pool or BlockPool(capacity=1 << 40, block_size=256)
        self.cache = PrefixCache(self.pool, make_cache or (lambda: None), prefix_caching)
        self.block_size = self.pool.block_size
        self.waiting: deque[_Seq | EngineRequest] = deque()
        self.running: dict[int, _Seq] = {}
        self.preemptions = 0
        self.failed = 0  # requests ended because their own sampler or processor raised
        self._admitted = 0
        # Running sequences whose prompt is prefilled but whose blocks are not in the
        # pool yet: written when a waiting request needs them, else when they finish.
        self._unwritten: dict[int, _Seq] = {}

    # -- state -------------------------------------------------------------
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    # -- requests ----------------------------------------------------------
    def add(self, request: EngineRequest) -> None:
        self.waiting.append(request)

    def abort(self, request_id: str) -> EngineRequest | None:
        for i, item in enumerate(self.waiting):
            req = item.req if isinstance(item, _Seq) else item
            if req.request_id == request_id:
                del self.waiting[i]
                return req
        for uid, seq in self.running.items():
            if seq.req.request_id == request_id:
                self.generator.remove([uid])
                self._drop(seq)
                return seq.req
        return None

    def _drop(self, seq: _Seq) -> None:
        del self.running[seq.uid]
        self._unwritten.pop(seq.uid, None)
        self.pool.unreserve(seq.working)
        seq.working = 0

    def _new_seq(self, req: EngineRequest) -> _Seq:
        p = req.params
        stop_ids = set(p.stop_token_ids)
        if not p.ignore_eos:
            stop_ids |= self.eos_token_ids
        failure = Failure()
        processors = guard(make_logits_processors(p, stop_ids), failure)
        seq = _Seq(req, list(req.prompt_ids), make_sampler(p), processors,
                   StopSequences([(t,) for t in sorted(stop_ids)]), failure=failure)
        seq.hashes = extend_hashes([], seq.tokens, self.block_size, p.cache_salt)
        return seq

    # -- admission ---------------------------------------------------------
    def _pending(self) -> set[bytes]:
        """Block hashes that running requests are prefilling right now."""
        return {h for s in self.running.values() if not s.prompt_done for h in s.hashes}

    def _admit(self) -> list[tuple[EngineRequest, TokenEvent]]:
        """Move waiting requests into the batch; return error events for unusable ones."""
        rejected: list[tuple[EngineRequest, TokenEvent]] = []
        admitted: list[_Seq] = []
        deferred: list[_Seq] = []
        pending = self._pending() if self.cache.enabled and self.waiting else set()
        unwritten = self._unwritten_index() if self.cache.enabled and self._unwritten and self.waiting else {}
        while self.waiting and len(self.running) + len(admitted) < self.max_num_seqs:
            item = self.waiting[0]
            if isinstance(item, EngineRequest):
                problem = self._problem(item)
                if problem is not None:  # one bad request must not take the batch down with it
                    self.waiting.popleft()
                    rejected.append((item, TokenEvent(item.request_id, None, "error", error=problem)))
                    continue
                item = self.waiting[0] = self._new_seq(item)
            seq = item
            blocks = self.cache.cached_prefix(seq.hashes)
            if len(blocks) < len(seq.hashes) and seq.hashes[len(blocks)] in unwritten:
                # A running request holds these blocks in the batch: copy them out now.
                self._write_back(unwritten.pop(seq.hashes[len(blocks)]), unwritten)
                blocks = self.cache.cached_prefix(seq.hashes)
            if any(h in pending for h in seq.hashes[len(blocks):]):
                # Another request is computing this prefix: wait for its blocks.
                deferred.append(self.waiting.popleft())
                continue
            need = self.pool.blocks_for(len(seq.tokens) + 1)
            if need > self.pool.capacity:
                self.waiting.popleft()
                msg = (f"the prompt needs {need} KV blocks of {self.block_size} tokens but the whole "
                       f"cache holds {self.pool.capacity}; raise --kv-cache-memory")
                rejected.append((seq.req, TokenEvent(seq.req.request_id, None, "error", error=msg)))
                continue
            tail, tail_len = self.cache.partial(seq.tokens, blocks, seq.req.params.cache_salt)
            used = blocks + ([tail] if tail is not None else [])
            self.pool.acquire(used)  # so that reserving cannot evict them
            ok = self.pool.reserve(need)
            if not ok:
                self.pool.release(used)
                break  # first come, first served: later requests wait too
            self.waiting.popleft()
            hit = self.cache.build(seq.tokens, blocks, tail, tail_len)
            self.pool.release(used)
            if seq.cached_tokens is None:
                seq.cached_tokens = hit.tokens
            seq.reused_tokens = seq.hit_tokens = hit.tokens
            seq.caches = hit.caches
            if seq.req.mm is not None:
                problem = self._vision_prefill(seq)
                if problem is not None:
                    self.pool.unreserve(need)
                    rejected.append((seq.req, TokenEvent(seq.req.request_id, None, "error", error=problem)))
                    continue
            seq.working = need
            admitted.append(seq)
            if self.cache.enabled:
                pending.update(seq.hashes[len(blocks):])
        self.waiting.extendleft(reversed(deferred))
        if admitted:
            self._insert(admitted)
        return rejected

    def _vision_prefill(self, seq: _Seq) -> str | None:
        """Encode a vision request's media and prefill its prompt on its own (see
        ``core.vision``); it then joins the batch like a prefix-cache hit."""
        if self.vision is None:
            return "this model reads text only"
        try:
            with mx.stream(self.stream or mx.default_stream(mx.default_device())):
                seq.hit_tokens = self.vision.prefill(seq.tokens, seq.req.mm, seq.caches, seq.hit_tokens)
        except Exception as exc:  # noqa: BLE001 - bad media end this request only
            log.warning("vision prefill of %s failed: %s: %s", seq.req.request_id, type(exc).__name__, exc)
            seq.caches = None
            return f"the media could not be processed: {type(exc).__name__}: {exc}"
        return None

    def _insert(self, seqs: list[_Seq]) -> None:
        prompts, max_tokens, caches, all_tokens, samplers, processors, stops = [], [], [], [], [], [], []
        for seq in seqs:
            n = seq.hit_tokens
            prompts.append(seq.tokens[n:])
            all_tokens.append(seq.tokens[:n])
            caches.append(seq.caches)
            max_tokens.append(seq.req.params.max_tokens - seq.generated)
            samplers.append(seq.sampler)
            processors.append(seq.processors)
            stops.append(seq.stops)
            seq.caches = None
        with mx.stream(self.stream or mx.default_stream(mx.default_device())):
            uids = self.generator.insert(prompts, max_tokens, caches=caches, all_tokens=all_tokens,
                                         samplers=samplers, logits_processors=processors, stop_sequences=stops)
        for uid, seq in zip(uids, seqs):
            seq.uid = uid
            seq.new_tokens = []
            seq.prompt_done = False
            self._admitted += 1
            seq.order = self._admitted
            self.running[uid] = seq

    def _problem(self, req: EngineRequest) -> str | None:
        if not req.prompt_ids:
            return "empty prompt"
        if req.params.max_tokens < 1:
            return "max_tokens must be at least 1"
        if self.vocab_size and (min(req.prompt_ids) < 0 or max(req.prompt_ids) >= self.vocab_size):
            return "prompt has token ids outside the vocabulary"
        if self.vocab_size and req.params.top_k >= self.vocab_size:
            req.params.top_k = 0  # keeping the whole vocabulary is what top_k >= vocab means
        return None

    # -- stepping ----------------------------------------------------------
    def expire(self, now: float) -> list[tuple[EngineRequest, TokenEvent]]:
        """End every request whose deadline has passed (waiting or running)."""
        out = []
        for item in list(self.waiting):
            req = item.req if isinstance(item, _Seq) else item
            if req.deadline is not None and now > req.deadline:
                self.waiting.remove(item)
                out.append((req, _timeout_event(req)))
        for seq in list(self.running.values()):
            if seq.req.deadline is not None and now > seq.req.deadline:
                self.generator.remove([seq.uid])
                self._drop(seq)
                out.append((seq.req, _timeout_event(seq.req)))
        return out

    def step(self) -> list[tuple[EngineRequest, TokenEvent]]:
        """Admit what fits, run one BatchGenerator step, return its token events."""
        events = self._admit()
        if not self.running:
            return events
        failed_before = {uid for uid, s in self.running.items() if s.failure.message is not None}
        prompt_responses, responses = self.generator.next()
        for pr in prompt_responses:
            if pr.end_of_prompt and pr.uid in self.running:
                seq = self.running[pr.uid]
                seq.prompt_done = True
                if self.cache.enabled and len(seq.hashes) * self.block_size > seq.reused_tokens:
                    self._unwritten[seq.uid] = seq
        wants_logprobs: list[tuple[TokenEvent, mx.array, int]] = []
        for r in responses:
            seq = self.running.get(r.uid)
            if seq is None:  # aborted after its token was already in flight
                continue
            if seq.failure.message is not None and r.finish_reason is None:
                # Its own processor raised, so only it ends. A failure during this step
                # concerns the token drawn ahead; the token returned now is still good.
                token = None if r.uid in failed_before else r.token
                events.append((seq.req, TokenEvent(seq.req.request_id, token, "error", error=seq.failure.message)))
                self.generator.remove([seq.uid])
                self._drop(seq)
                self.failed += 1
                continue
            req = seq.req
            event = TokenEvent(req.request_id, r.token, r.finish_reason)
            if seq.generated == 0:
                event.cached_tokens = seq.cached_tokens
            seq.generated += 1
            seq.new_tokens.append(r.token)
            events.append((req, event))
            if req.params.logprobs is not None:
                wants_logprobs.append((event, r.logprobs, req.params.logprobs))
            if r.finish_reason is not None:
                if r.prompt_cache is not None and r.all_tokens:
                    self._store(seq, r.all_tokens, r.prompt_cache)
                self._drop(seq)
        if wants_logprobs:
            self._attach_logprobs(wants_logprobs)
        events += self._grow()
        return events

    def _unwritten_index(self) -> dict[bytes, _Seq]:
        index: dict[bytes, _Seq] = {}
        for seq in self._unwritten.values():
            for h in seq.hashes[seq.hit_tokens // self.block_size:]:
                index.setdefault(h, seq)
        return index

    def _write_back(self, seq: _Seq, index: dict[bytes, _Seq]) -> None:
        """Copy a running sequence's prompt blocks into the pool, on demand.

        Not done for every prompt: extracting a sequence from the batch cache
        synchronizes with the device, which on a GPU stalls the step pipeline
        (measured: a third of the throughput at 128 sequences when every prompt
        was written at once). Without a taker the blocks are written at finish,
        from the cache mlx-lm extracts then anyway."""
        self._unwritten.pop(seq.uid, None)
        for h in [h for h, s in index.items() if s is seq]:
            del index[h]
        if seq.uid not in self.running:
            return
        cache, tokens = self.generator.extract_cache([seq.uid])[seq.uid]
        self._store(seq, tokens, cache)

    def _store(self, seq: _Seq, tokens: list[int], caches: list[Any]) -> None:
        if not self.cache.enabled:
            return
        with mx.stream(self.stream or mx.default_stream(mx.default_device())):
            self.cache.store(tokens, seq.hashes, caches, seq.req.params.cache_salt)

    def _grow(self) -> list[tuple[EngineRequest, TokenEvent]]:
        """Reserve the block each running sequence needs for its next token;
        preempt the newest sequences when memory runs out."""
        events: list[tuple[EngineRequest, TokenEvent]] = []
        # Fast path (every step, so it matters on a GPU where the step is host-bound): a
        # sequence needs a block only when its next token crosses a block boundary; when
        # the free blocks cover every such need, take them without sorting anything.
        bs = self.block_size
        needs = [(seq, n) for seq in self.running.values()
                 if (n := -(-(len(seq.tokens) + len(seq.new_tokens) + 1) // bs) - seq.working) > 0]
        if not needs:
            return events
        if sum(n for _, n in needs) <= self.pool.free:
            for seq, n in needs:
                self.pool.reserve(n)
                seq.working += n
            return events
        for seq in sorted(self.running.values(), key=lambda s: s.order):
            if seq.uid not in self.running:
                continue  # preempted below for an older sequence
            need = self.pool.blocks_for(len(seq.tokens) + len(seq.new_tokens) + 1) - seq.working
            while need > 0 and not self.pool.reserve(need):
                victim = max(self.running.values(), key=lambda s: s.order)
                if victim is seq and len(self.running) == 1:
                    # Alone and still out of room: the cache is as full as it gets.
                    self.generator.remove([seq.uid])
                    self._drop(seq)
                    events.append((seq.req, TokenEvent(seq.req.request_id, None, "length")))
                    need = 0
                    break
                self._preempt(victim)
                if victim is seq:
                    need = 0
            if need > 0:
                seq.working += need
        return events

    def _preempt(self, seq: _Seq) -> None:
        """Take ``seq`` out of the batch; it resumes later from its tokens so far."""
        saved = self.generator.remove([seq.uid], return_prompt_caches=self.cache.enabled)
        self._drop(seq)
        if seq.uid in saved:
            caches, tokens = saved[seq.uid]
            self._store(seq, tokens, caches)
        self.preemptions += 1
        if seq.prompt_done:  # the batch had already drawn the token after the last one we got
            rewind(seq.sampler, seq.processors, 1)
        seq.tokens = seq.tokens + seq.new_tokens
        seq.new_tokens = []
        seq.hashes = extend_hashes(seq.hashes, seq.tokens, self.block_size, seq.req.params.cache_salt)
        seq.uid = None
        self.waiting.appendleft(seq)
        log.info("preempted %s after %d tokens (KV cache full)", seq.req.request_id, seq.generated)

    @staticmethod
    def _attach_logprobs(rows: list[tuple[TokenEvent, mx.array, int]]) -> None:
        vectors = mx.stack([row[1] for row in rows])
        tokens = mx.array([row[0].token_id for row in rows])
        chosen = mx.take_along_axis(vectors, tokens[:, None], axis=-1)[:, 0]
        k = max(row[2] for row in rows)
        if k > 0:
            top_ids = mx.argpartition(-vectors, kth=k - 1, axis=-1)[:, :k]
            top_vals = mx.take_along_axis(vectors, top_ids, axis=-1)
            mx.eval(chosen, top_ids, top_vals)
            top_ids, top_vals = top_ids.tolist(), top_vals.tolist()
        else:
            mx.eval(chosen)
        chosen = chosen.tolist()
        for i, (event, _, want) in enumerate(rows):
            top: list[tuple[int, float]] = []
            if want > 0:
                top = sorted(zip(top_ids[i], top_vals[i]), key=lambda t: -t[1])[:want]
            event.logprob = TokenLogprob(event.token_id, chosen[i], top)

    def requests(self) -> list[EngineRequest]:
        """Every request waiting or running."""
        waiting = [item.req if isinstance(item, _Seq) else item for item in self.waiting]
        return waiting + [seq.req for seq in self.running.values()]

    def fail_all(self) -> list[EngineRequest]:
        """Drop every request (after an engine error) and start a fresh generator.
        Cached blocks stay: their contents were complete before the failure."""
        dropped = self.requests()
        self.waiting.clear()
        self.running.clear()
        self.pool.working = 0
        try:
            self.generator.close()
        except Exception:  # noqa: BLE001 - the old generator is discarded either way
            pass
        self.generator = self._make_generator()
        return dropped


TIMEOUT_PREFIX = "request timed out"


def _timeout_event(req: EngineRequest) -> TokenEvent:
    limit = req.deadline - req.arrival
    return TokenEvent(req.request_id, None, "error", error=f"{TIMEOUT_PREFIX} after {limit:g} s (--request-timeout)")
