"""``bench raw``: the ceiling, mlx-lm's BatchGenerator driven directly.

No engine thread, no event loop, no detokenizer: one Python loop calls
``BatchGenerator.next()`` and keeps exactly ``conc`` sequences in flight (a new
one is inserted as soon as one finishes, like the semaphore of the other
modes). Prompts are ``prompt_tokens`` random token ids (no chat template), or,
with ``prompt_words``, the very token ids ``bench engine`` feeds the engine (the
same texts through the chat template), for an exact like-for-like. Decoding is greedy with no stop tokens, so every sequence makes ``max_tokens``
tokens. TTFT counts from a sequence's insertion to the step that returns its
first token; the inter-token gaps are between the steps that return its tokens.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .engine import load_llm
from .prompts import make_texts, random_token_prompts, render_chat_prompt
from .stats import RequestStats, requests_for, summarize

WARMUP_TOKENS = 4


@dataclass
class RawBenchConfig:
    model: str | None = None
    conc: list[int] = field(default_factory=lambda: [1, 5, 16, 64])
    requests: int = 0  # 0: max(2 * conc, 4) per level
    max_tokens: int = 128
    prompt_tokens: int = 80
    prompt_words: int | None = None  # set: use bench engine's chat-rendered prompts instead of random ids
    prefill_batch_size: int = 8  # the engine's default
    prefill_step_size: int = 512  # the engine's default
    label: str = ""
    seed: int = 1
    warmup: bool = True


def run_closed_loop(gen, prompts: list[list[int]], max_tokens: int, conc: int) -> tuple[list[RequestStats], float]:
    """Generate every prompt with at most ``conc`` in flight; returns per-request stats and wall time."""
    results = [RequestStats(prompt_tokens=len(p)) for p in prompts]
    waiting = deque(range(len(prompts)))
    live: dict[int, RequestStats] = {}

    def top_up() -> None:
        take = []
        while waiting and len(live) + len(take) < conc:
            take.append(waiting.popleft())
        if not take:
            return
        uids = gen.insert([prompts[i] for i in take], [max_tokens] * len(take))
        now = time.perf_counter()
        for uid, i in zip(uids, take):
            results[i].start = now
            live[uid] = results[i]

    t0 = time.perf_counter()
    top_up()
    while live:
        _, responses = gen.next()
        now = time.perf_counter()
        freed = False
        for r in responses:
            st = live.get(r.uid)
            if st is None:
                continue
            st.tokens += 1
            st.mark(now)
            if r.finish_reason is not None:
                del live[r.uid]
                freed = True
        if freed:
            top_up()
    return results, time.perf_counter() - t0


def vocab_size(model: Any, tokenizer: Any) -> int:
    size = getattr(getattr(model, "args", None), "vocab_size", None)
    return size if isinstance(size, int) and size > 0 else len(tokenizer)


def make_prompts(cfg: RawBenchConfig, count: int, seed: int, tokenizer: Any, vocab: int) -> list[list[int]]:
    if cfg.prompt_words:
        return [render_chat_prompt(tokenizer, t) for t in make_texts(count, cfg.prompt_words, seed)]
    return random_token_prompts(count, cfg.prompt_tokens, vocab, seed)


def raw_bench(cfg: RawBenchConfig, report: Callable[[dict], None], loaded: Any = None) -> list[dict]:
    from mlx_lm.generate import BatchGenerator

    loaded = loaded or load_llm(cfg.model)
    model = loaded.model
    vocab = vocab_size(model, loaded.tokenizer)
    records = []
    for conc in cfg.conc:
        gen = BatchGenerator(model, max_tokens=cfg.max_tokens, completion_batch_size=conc,
                             prefill_batch_size=min(conc, cfg.prefill_batch_size),
                             prefill_step_size=cfg.prefill_step_size)
        try:
            if cfg.warmup:  # one short sequence, then one untimed round at this batch size
                warm = make_prompts(cfg, conc + 1, cfg.seed + 1000, loaded.tokenizer, vocab)
                run_closed_loop(gen, warm[:1], min(WARMUP_TOKENS, cfg.max_tokens), 1)
                run_closed_loop(gen, warm[1:], min(WARMUP_TOKENS, cfg.max_tokens), conc)
            prompts = make_prompts(cfg, requests_for(conc, cfg.requests), cfg.seed, loaded.tokenizer, vocab)
            results, wall = run_closed_loop(gen, prompts, cfg.max_tokens, conc)
        finally:
            gen.close()
        record = summarize(results, conc=conc, wall=wall, label=cfg.label, mode="raw")
        report(record)
        records.append(record)
    return records
