"""Continuous-batching scheduler on top of mlx-lm's BatchGenerator.

BatchGenerator already does what a step needs: one decode step for every
running sequence, then one chunk (``prefill_step_size`` tokens) of prompt
processing for newly admitted ones, so long prompts are prefilled in slices
interleaved with decode steps and running streams keep flowing. Finished
sequences leave the batch inside ``next()`` and ``remove()`` drops cancelled
ones at once.

What we keep ourselves, and why:

* admission: requests wait here, not inside BatchGenerator, so the number of
  sequences in flight (``max_num_seqs``) and, later, KV memory decide who runs;
* the mapping from BatchGenerator uids to our requests, so events carry our ids
  and aborted requests' late tokens are dropped;
* log-probabilities: BatchGenerator hands out the full-vocabulary vector of each
  sampled token; we reduce it to the chosen token and its top-k alternatives in
  one batched computation per step, only for requests that asked.

All methods run on the engine thread.
"""

from __future__ import annotations

from collections import deque

import mlx.core as mx
from mlx_lm.generate import BatchGenerator, StopSequences

from .request import EngineRequest, TokenEvent, TokenLogprob
from .sampling import make_logits_processors, make_sampler


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
    ):
        self.model = model
        self.eos_token_ids = set(eos_token_ids)
        self.max_num_seqs = max_num_seqs
        self.vocab_size = vocab_size
        self._make_generator = lambda: BatchGenerator(
            model,
            completion_batch_size=max_num_seqs,
            prefill_batch_size=min(prefill_batch_size, max_num_seqs),
            prefill_step_size=prefill_step_size,
            stream=stream,
        )
        self.generator = self._make_generator()
        self.waiting: deque[EngineRequest] = deque()
        self.running: dict[int, EngineRequest] = {}

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
        for i, req in enumerate(self.waiting):
            if req.request_id == request_id:
                del self.waiting[i]
                return req
        for uid, req in self.running.items():
            if req.request_id == request_id:
                self.generator.remove([uid])
                del self.running[uid]
                return req
        return None

    def _admit(self) -> list[tuple[EngineRequest, TokenEvent]]:
        """Move waiting requests into the batch; return error events for unusable ones."""
        free = self.max_num_seqs - len(self.running)
        rejected: list[tuple[EngineRequest, TokenEvent]] = []
        batch = []
        while free > len(batch) and self.waiting:
            req = self.waiting.popleft()
            problem = self._problem(req)
            if problem is None:
                batch.append(req)
            else:  # one bad request must not take the batch down with it
                rejected.append((req, TokenEvent(req.request_id, None, "error", error=problem)))
        if not batch:
            return rejected
        prompts, max_tokens, samplers, processors, stops = [], [], [], [], []
        for req in batch:
            p = req.params
            stop_ids = set(p.stop_token_ids)
            if not p.ignore_eos:
                stop_ids |= self.eos_token_ids
            prompts.append(req.prompt_ids)
            max_tokens.append(p.max_tokens)
            samplers.append(make_sampler(p))
            processors.append(make_logits_processors(p, stop_ids))
            stops.append(StopSequences([(t,) for t in sorted(stop_ids)]))
        uids = self.generator.insert(
            prompts, max_tokens, samplers=samplers, logits_processors=processors, stop_sequences=stops
        )
        for uid, req in zip(uids, batch):
            req.uid = uid
            self.running[uid] = req
        return rejected

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
    def step(self) -> list[tuple[EngineRequest, TokenEvent]]:
        """Admit what fits, run one BatchGenerator step, return its token events."""
        events = self._admit()
        if not self.running:
            return events
        _, responses = self.generator.next()
        wants_logprobs: list[tuple[TokenEvent, mx.array, int]] = []
        for r in responses:
            req = self.running.get(r.uid)
            if req is None:  # aborted after its token was already in flight
                continue
            event = TokenEvent(req.request_id, r.token, r.finish_reason)
            events.append((req, event))
            if req.params.logprobs is not None:
                wants_logprobs.append((event, r.logprobs, req.params.logprobs))
            if r.finish_reason is not None:
                del self.running[r.uid]
        if wants_logprobs:
            self._attach_logprobs(wants_logprobs)
        return events

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

    def fail_all(self) -> list[EngineRequest]:
        """Drop every request (after an engine error) and start a fresh generator."""
        dropped = list(self.waiting) + list(self.running.values())
        self.waiting.clear()
        self.running.clear()
        try:
            self.generator.close()
        except Exception:  # noqa: BLE001 - the old generator is discarded either way
            pass
        self.generator = self._make_generator()
        return dropped
