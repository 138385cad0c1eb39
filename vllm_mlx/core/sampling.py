"""Samplers and logits processors built per request for mlx-lm's BatchGenerator.

The truncation steps (top-p, min-p, top-k) are mlx-lm's own. We add four things
mlx-lm does not offer (the fourth, grammar masks for structured output, lives in
``guided.py``):

* a per-request PRNG key, so a request with ``seed`` draws the same tokens
  whether it runs alone or inside a batch (mlx-lm samples from the global key);
* OpenAI/vLLM penalty semantics: presence and frequency penalties count only the
  generated tokens, the repetition penalty counts prompt and output (mlx-lm's
  versions look at a fixed window of the last N tokens, prompt included);
* ``min_tokens``: end-of-sequence and stop tokens are masked until enough tokens
  have been generated.

Greedy requests get ``None`` so the batch shares one vectorised argmax, and
unseeded requests with identical settings share one sampler object, which lets
BatchGenerator sample them in a single call.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import Callable, Iterable

import mlx.core as mx
from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p

from .params import SamplingParams

Sampler = Callable[[mx.array], mx.array]
LogitsProcessor = Callable[[mx.array, mx.array], mx.array]


def _truncations(top_p: float, min_p: float, top_k: int) -> list[Callable[[mx.array], mx.array]]:
    steps = []
    if 0.0 < top_p < 1.0:
        steps.append(lambda x: apply_top_p(x, top_p))
    if min_p > 0.0:
        steps.append(lambda x: apply_min_p(x, min_p))
    if top_k > 0:
        steps.append(lambda x: apply_top_k(x, top_k))
    return steps


@functools.lru_cache(maxsize=256)
def _shared_sampler(temperature: float, top_p: float, min_p: float, top_k: int) -> Sampler:
    steps = _truncations(top_p, min_p, top_k)
    inv_temp = 1.0 / temperature

    def sample(logprobs: mx.array) -> mx.array:
        for step in steps:
            logprobs = step(logprobs)
        return mx.random.categorical(logprobs * inv_temp)

    return sample


class _SeededSampler:
    """Draws from its own PRNG key chain. ``rewind`` undoes the last draws: the
    batch samples one token ahead, so a preempted sequence has one draw in flight
    that must be made again when it resumes."""

    def __init__(self, temperature: float, top_p: float, min_p: float, top_k: int, seed: int):
        self.steps = _truncations(top_p, min_p, top_k)
        self.inv_temp = 1.0 / temperature
        self.key = mx.random.key(seed)
        self.previous: deque[mx.array] = deque(maxlen=4)

    def __call__(self, logprobs: mx.array) -> mx.array:
        for step in self.steps:
            logprobs = step(logprobs)
        self.previous.append(self.key)
        self.key, sub = mx.random.split(self.key)
        return mx.random.categorical(logprobs * self.inv_temp, key=sub)

    def rewind(self, n: int) -> None:
        for _ in range(n):
            self.key = self.previous.pop()


def _seeded_sampler(temperature: float, top_p: float, min_p: float, top_k: int, seed: int) -> Sampler:
    return _SeededSampler(temperature, top_p, min_p, top_k, seed)


def rewind(sampler, processors, n: int) -> None:
    """Undo the last ``n`` calls of a request's stateful sampler and processors."""
    for fn in [sampler, *processors]:
        if hasattr(fn, "rewind"):
            fn.rewind(n)


def make_sampler(params: SamplingParams) -> Sampler | None:
    """The sampler for one request, or None for greedy (the batch's shared argmax)."""
    if params.greedy:
        return None
    top_k = params.top_k if params.top_k > 0 else 0
    if params.seed is None:
        return _shared_sampler(params.temperature, params.top_p, params.min_p, top_k)
    return _seeded_sampler(params.temperature, params.top_p, params.min_p, top_k, params.seed)


def _penalties(params: SamplingParams) -> LogitsProcessor | None:
    rep, pres, freq = params.repetition_penalty, params.presence_penalty, params.frequency_penalty
    if rep == 1.0 and pres == 0.0 and freq == 0.0:
        return None
    prompt_len: list[int] = []

    def apply(tokens: mx.array, logits: mx.array) -> mx.array:
        # ``tokens`` is the whole context: prompt, then every generated token.
        # On the first call it is exactly the prompt, which fixes the split.
        if not prompt_len:
            prompt_len.append(tokens.size)
        vocab = logits.shape[-1]
        if rep != 1.0 and tokens.size:
            seen = mx.zeros((vocab,), dtype=mx.float32).at[tokens].add(1.0) > 0
            scaled = mx.where(logits < 0, logits * rep, logits / rep)
            logits = mx.where(seen, scaled, logits)
        generated = tokens[prompt_len[0]:]
        if (pres or freq) and generated.size:
            counts = mx.zeros((vocab,), dtype=logits.dtype).at[generated].add(1)
            logits = logits - freq * counts - pres * (counts > 0).astype(logits.dtype)
        return logits

    return apply


class _MinTokens:
    """Masks end-of-sequence and stop tokens until ``min_tokens`` were generated;
    called once per generated token, in order (``rewind`` as for samplers)."""

    def __init__(self, min_tokens: int, banned: list[int]):
        self.min_tokens = min_tokens
        self.index = mx.array(banned)
        self.calls = 0

    def __call__(self, _tokens: mx.array, logits: mx.array) -> mx.array:
        self.calls += 1
        if self.calls > self.min_tokens:
            return logits
        return logits.at[:, self.index].add(-float("inf"))

    def rewind(self, n: int) -> None:
        self.calls = max(0, self.calls - n)


def _min_tokens(min_tokens: int, banned: Iterable[int]) -> LogitsProcessor | None:
    banned = sorted(set(banned))
    if min_tokens <= 0 or not banned:
        return None
    return _MinTokens(min_tokens, banned)


def _logit_bias(bias: dict[int, float] | None) -> LogitsProcessor | None:
    if not bias:
        return None
    index = mx.array(list(bias.keys()))
    values = mx.array(list(bias.values()), dtype=mx.float32)

    def apply(_tokens: mx.array, logits: mx.array) -> mx.array:
        return logits.at[:, index].add(values.astype(logits.dtype))

    return apply


def make_logits_processors(params: SamplingParams, stop_ids: Iterable[int]) -> list[LogitsProcessor]:
    """Processors for one request, in the order vLLM applies them."""
    procs = [_logit_bias(params.logit_bias), _penalties(params), _min_tokens(params.min_tokens, stop_ids)]
    if params.guide is not None:  # last: the grammar's mask has the final say (a fresh matcher per sequence)
        procs.append(params.guide.logits_processor())
    return [p for p in procs if p is not None]
