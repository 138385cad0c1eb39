"""``bench prefix``: the prefix cache's targets, in-process on one engine.

Scenarios (one JSON line each):

* ``warm_repeat``: a long system prompt + a user message, cold; then the same
  system prompt with a new user message. TTFT of each and their ratio.
* ``cold_burst``: N requests sharing a new (never seen) system prompt arrive
  together; the slowest first token relative to one cold TTFT.
* ``conversation``: 10 turns, each resending the whole conversation (the
  model's own answers included); prefilled tokens on the last turn versus its
  new tokens.
* ``capacity``: at one KV budget, the most 1k-token sequences running at once,
  versus what per-request preallocation of ``max_model_len`` would allow; and
  the memory one shared system prompt takes over many conversations.
* ``no_share``: throughput at a concurrency with nothing shared, caching on
  versus off (two engines, same prompts).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass

from .engine import load_llm


@dataclass
class PrefixBenchConfig:
    model: str | None = None
    system_tokens: int = 3422
    burst: int = 8
    block_size: int = 32
    prefill_step_size: int = 512
    capacity_len: int = 1024
    capacity_requests: int = 24
    max_model_len: int = 8192
    conc: int = 16
    max_tokens: int = 64
    repeats: int = 3  # no_share: alternating rounds per setting; the medians are compared
    scenarios: tuple[str, ...] = ("warm_repeat", "cold_burst", "conversation", "capacity", "no_share")
    label: str = ""
    seed: int = 1


def _ids(rng: random.Random, n: int, vocab: int) -> list[int]:
    return [rng.randrange(10, vocab - 1) for _ in range(n)]


async def _ttft(ae, prompt, params) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    first, cached, n = None, 0, 0
    async for d in ae.generate(prompt, params):
        if d.cached_tokens is not None:
            cached = d.cached_tokens
        if d.token_ids and first is None:
            first = time.perf_counter() - t0
        n = d.num_tokens
    return first or 0.0, cached, n


def prefix_bench(cfg: PrefixBenchConfig, report) -> list[dict]:
    from ..core import AsyncEngine, Engine, EngineConfig, SamplingParams

    loaded = load_llm(cfg.model)
    model, tok = loaded.model, loaded.tokenizer
    vocab = model.args.vocab_size if hasattr(model, "args") else len(tok)
    rng = random.Random(cfg.seed)
    greedy = SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True)
    records = []

    def emit(rec: dict) -> None:
        rec = {"mode": "prefix", "label": cfg.label, **rec}
        report(rec)
        records.append(rec)

    def engine(**kw) -> Engine:
        kw.setdefault("block_size", cfg.block_size)
        kw.setdefault("prefill_step_size", cfg.prefill_step_size)
        kw.setdefault("max_num_seqs", 64)
        return Engine(model, tok, EngineConfig(**kw)).start()

    eng = engine()
    ae = AsyncEngine(eng)
    run = asyncio.run
    run(_ttft(ae, _ids(rng, 64, vocab), greedy))  # warm-up
    cold_ttft = None
    if {"warm_repeat", "cold_burst"} & set(cfg.scenarios):
        system = _ids(rng, cfg.system_tokens, vocab)
        cold_ttft, _, _ = run(_ttft(ae, system + _ids(rng, 20, vocab), greedy))
        warm, cached, _ = run(_ttft(ae, system + _ids(rng, 20, vocab), greedy))
        if "warm_repeat" in cfg.scenarios:
            emit({"scenario": "warm_repeat", "prompt_tokens": cfg.system_tokens + 20, "cold_ttft_s": round(cold_ttft, 3),
                  "warm_ttft_s": round(warm, 3), "cached_tokens": cached, "ratio": round(warm / cold_ttft, 4)})
    if "cold_burst" in cfg.scenarios:
        system = _ids(rng, cfg.system_tokens, vocab)

        async def burst():
            return await asyncio.gather(*(_ttft(ae, system + _ids(rng, 20, vocab), greedy) for _ in range(cfg.burst)))

        out = run(burst())
        slowest = max(t for t, _, _ in out)
        emit({"scenario": "cold_burst", "requests": cfg.burst, "one_cold_ttft_s": round(cold_ttft, 3),
              "max_ttft_s": round(slowest, 3), "ratio": round(slowest / cold_ttft, 3),
              "requests_served_from_cache": sum(c > 0 for _, c, _ in out)})
    if "conversation" in cfg.scenarios:
        convo = _ids(rng, 400, vocab)
        turn_params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
        rows, new = [], len(convo)
        for turn in range(10):
            res = run(ae.generate_all(convo, turn_params))[0]
            rows.append({"turn": turn + 1, "prompt": len(convo), "prefilled": len(convo) - res.cached_tokens,
                         "new": new})
            new = rng.randrange(10, 60)
            convo = convo + res.token_ids + _ids(rng, new, vocab)
        last = rows[-1]
        emit({"scenario": "conversation", "turns": rows, "turn10_prefilled": last["prefilled"],
              "turn10_new_tokens": last["new"], "block_size": cfg.block_size,
              "ok": last["prefilled"] <= last["new"] + cfg.block_size})
    eng.shutdown()

    if "capacity" in cfg.scenarios:
        probe = engine(max_num_seqs=1)
        per_token = probe.kv.bytes_per_token
        probe.shutdown()
        contiguous_seqs = 2
        budget = contiguous_seqs * cfg.max_model_len * per_token  # room for 2 preallocated max_model_len caches
        eng = engine(kv_cache_memory=f"{budget / (1 << 20):.4f}MiB")
        ae = AsyncEngine(eng)
        prompts = [_ids(rng, cfg.capacity_len - 24, vocab) for _ in range(cfg.capacity_requests)]
        params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
        peak = [0]

        async def watch(done):
            while not done.is_set():
                peak[0] = max(peak[0], eng.num_running)
                await asyncio.sleep(0.005)

        async def load():
            done = asyncio.Event()
            w = asyncio.create_task(watch(done))
            out = await asyncio.gather(*(ae.generate_all(p, params) for p in prompts))
            done.set()
            await w
            return out

        out = run(load())
        preemptions = eng.kv_stats()["preemptions"]
        eng.shutdown()
        # One system prompt shared by many conversations: held once in the pool
        # (fresh engine, ample memory, so nothing is evicted while counting).
        eng = engine()
        ae = AsyncEngine(eng)
        system = _ids(rng, 1024, vocab)
        convs = 8

        async def conversations():
            await asyncio.gather(*(ae.generate_all(system + _ids(rng, 8, vocab), params) for _ in range(convs)))

        run(conversations())
        added = eng.kv_stats()["blocks_cached"]
        stats = eng.kv_stats()
        emit({"scenario": "capacity", "budget_mib": round(budget / (1 << 20), 1), "max_model_len": cfg.max_model_len,
              "contiguous_prealloc_seqs": contiguous_seqs, "peak_running_1k_seqs": peak[0],
              "ratio": round(peak[0] / contiguous_seqs, 2), "failed": sum(r[0].finish_reason == "error" for r in out),
              "preemptions": preemptions,
              "shared_system_prompt": {"conversations": convs, "system_blocks": 1024 // cfg.block_size,
                                       "cached_blocks": added, "prefix_hits": stats["prefix_hits"],
                                       "full_copy_per_conversation_blocks": convs * (1024 + 8 + 24) // cfg.block_size}})
        eng.shutdown()

    if "no_share" in cfg.scenarios:
        from .prompts import make_texts, render_chat_prompt

        texts = make_texts(cfg.conc * 2, 64, cfg.seed + 7)
        prompts = [render_chat_prompt(tok, t) for t in texts]
        params = SamplingParams(max_tokens=cfg.max_tokens, temperature=0.0, ignore_eos=True)
        result = {}
        for caching in (False, True) * cfg.repeats:
            eng = engine(prefix_caching=caching)
            ae = AsyncEngine(eng)

            async def go():
                sem = asyncio.Semaphore(cfg.conc)

                async def one(p):
                    async with sem:
                        return await ae.generate_all(p, params)

                await asyncio.gather(*(one(p) for p in prompts[: cfg.conc]))  # warm-up at this batch size
                t0 = time.perf_counter()
                out = await asyncio.gather(*(one(p) for p in prompts[cfg.conc:]))
                return sum(len(r[0].token_ids) for r in out) / (time.perf_counter() - t0)

            result.setdefault(caching, []).append(run(go()))
            eng.shutdown()
        on, off = statistics.median(result[True]), statistics.median(result[False])
        emit({"scenario": "no_share", "conc": cfg.conc, "repeats": cfg.repeats, "tok_s_caching_on": round(on, 1),
              "tok_s_caching_off": round(off, 1), "ratio": round(on / off, 3),
              "rounds_on": [round(x, 1) for x in result[True]], "rounds_off": [round(x, 1) for x in result[False]]})
    return records
