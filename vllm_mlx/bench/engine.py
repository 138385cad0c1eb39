"""``bench engine``: the same load as ``bench serve``, in-process, with no HTTP.

The model is loaded through the project's own loader and driven through
``Engine`` + ``AsyncEngine``, the path every server route takes. Prompts are the
same texts ``bench serve`` sends, rendered with the chat template the way the
server renders them. TTFT and inter-token gaps are measured when the deltas
arrive on the event loop, i.e. where the server would write them to the socket.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .prompts import WARMUP_TEXT, make_texts, render_chat_prompt
from .stats import RequestStats, requests_for, summarize

WARMUP_TOKENS = 4
WARMUP_SEED_OFFSET = 1000  # warm-up prompts: same length as the real ones, never the same text


class BenchError(RuntimeError):
    """The benchmark cannot run (bad model, wrong kind); the message says why."""


@dataclass
class EngineBenchConfig:
    model: str | None = None
    conc: list[int] = field(default_factory=lambda: [1, 5, 16, 64])
    requests: int = 0  # 0: max(2 * conc, 4) per level
    max_tokens: int = 128
    prompt_words: int = 64
    max_num_seqs: int = 64
    prefill_step_size: int = 512
    prefill_batch_size: int | None = None
    label: str = ""
    seed: int = 1
    ignore_eos: bool = True
    warmup: bool = True
    prefix_caching: bool = True


def load_llm(model: str | None):
    """Load ``model`` exactly as ``vllm-mlx serve`` does; returns the ``LoadedModel``."""
    from ..model_source import load_model
    from ..plugins import PluginManager

    loaded = load_model(model, PluginManager(), runner="generate")
    if loaded.kind != "llm":
        raise BenchError(f"{loaded.path} is a {loaded.kind} model; the benchmark runs text models (llm) only")
    return loaded


async def engine_request(aengine, prompt_ids: list[int], params) -> RequestStats:
    """One request through ``AsyncEngine.generate``; never raises (failures land in ``.error``)."""
    stats = RequestStats(start=time.perf_counter(), prompt_tokens=len(prompt_ids))
    try:
        async for delta in aengine.generate(prompt_ids, params):
            if delta.token_ids:
                stats.mark(time.perf_counter())
            stats.tokens = delta.num_tokens
            if delta.finish_reason == "error":
                stats.error = f"engine error: {delta.error}"
    except Exception as exc:  # noqa: BLE001 - counted, like a failed HTTP request
        stats.error = f"{type(exc).__name__}: {exc}"
    return stats


async def run_round(aengine, prompts: list[list[int]], params, conc: int) -> tuple[list[RequestStats], float]:
    sem = asyncio.Semaphore(conc)

    async def limited(ids: list[int]) -> RequestStats:
        async with sem:
            return await engine_request(aengine, ids, params)

    t0 = time.perf_counter()
    results = await asyncio.gather(*(limited(p) for p in prompts))
    return list(results), time.perf_counter() - t0


async def run_levels(aengine, tokenizer, cfg: EngineBenchConfig, report: Callable[[dict], None]) -> list[dict]:
    from ..core import SamplingParams

    params = SamplingParams(max_tokens=cfg.max_tokens, temperature=0.0, ignore_eos=cfg.ignore_eos)
    warm_params = SamplingParams(max_tokens=min(WARMUP_TOKENS, cfg.max_tokens), temperature=0.0,
                                 ignore_eos=cfg.ignore_eos)
    params.validate()
    if cfg.warmup:
        await run_round(aengine, [render_chat_prompt(tokenizer, WARMUP_TEXT)], warm_params, 1)
    records = []
    for conc in cfg.conc:
        if cfg.warmup:  # one untimed round at this batch size, prompts of the same length
            warm = [render_chat_prompt(tokenizer, t)
                    for t in make_texts(conc, cfg.prompt_words, cfg.seed + WARMUP_SEED_OFFSET)]
            await run_round(aengine, warm, warm_params, conc)
        texts = make_texts(requests_for(conc, cfg.requests), cfg.prompt_words, cfg.seed)
        prompts = [render_chat_prompt(tokenizer, t) for t in texts]
        results, wall = await run_round(aengine, prompts, params, conc)
        record = summarize(results, conc=conc, wall=wall, label=cfg.label, mode="engine")
        report(record)
        records.append(record)
    return records


def engine_bench(cfg: EngineBenchConfig, report: Callable[[dict], None], loaded: Any = None) -> list[dict]:
    """Load the model (unless ``loaded`` is given), start an engine, run every level, shut down."""
    from ..core import AsyncEngine, Engine, EngineConfig

    loaded = loaded or load_llm(cfg.model)
    engine = Engine(loaded.model, loaded.tokenizer, EngineConfig(
        max_num_seqs=cfg.max_num_seqs, prefill_step_size=cfg.prefill_step_size,
        prefill_batch_size=cfg.prefill_batch_size,
        prefix_caching=cfg.prefix_caching,
    )).start()
    try:
        return asyncio.run(run_levels(AsyncEngine(engine), loaded.tokenizer, cfg, report))
    finally:
        engine.shutdown()
