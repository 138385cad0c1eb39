"""Fault isolation: code that fails for one request ends that request only."""

from __future__ import annotations

import asyncio
import random
import time

from vllm_mlx.core import AsyncEngine, Engine, EngineConfig, SamplingParams
from vllm_mlx.core import scheduler as scheduler_module

POISON = 7  # a request whose logit_bias names this token gets a processor that raises


def test_a_raising_logits_processor_fails_only_its_request(mlx_model, monkeypatch):
    real = scheduler_module.make_logits_processors

    def processors(params, stop_ids):
        procs = real(params, stop_ids)
        if params.logit_bias and POISON in params.logit_bias:
            calls = [0]

            def explode(tokens, logits):
                calls[0] += 1
                if calls[0] > 3:  # fails mid-generation, with other requests in the batch
                    raise RuntimeError("plugin bug")
                return logits

            procs.append(explode)
        return procs

    monkeypatch.setattr(scheduler_module, "make_logits_processors", processors)
    model, tok = mlx_model
    rng = random.Random(0)
    prompts = [[rng.randrange(5, 500) for _ in range(rng.randrange(5, 40))] for _ in range(8)]
    greedy = SamplingParams(max_tokens=12, temperature=0.0)
    eng = Engine(model, tok, EngineConfig(max_num_seqs=16)).start()
    try:
        ae = AsyncEngine(eng)

        async def go(with_poison: bool):
            jobs = [ae.generate_all(p, greedy) for p in prompts]
            if with_poison:
                jobs.insert(3, ae.generate_all(prompts[0], SamplingParams(max_tokens=12, temperature=0.0,
                                                                          logit_bias={POISON: 0.0})))
            return [r[0] for r in await asyncio.gather(*jobs)]

        alone = asyncio.run(go(False))
        mixed = asyncio.run(go(True))
        bad = mixed.pop(3)
        assert bad.finish_reason == "error" and "logits processor failed: RuntimeError: plugin bug" in bad.error
        assert len(bad.token_ids) == 3  # the tokens before the failure were delivered
        assert [r.token_ids for r in mixed] == [r.token_ids for r in alone]
        assert eng.state == "running" and eng.counters.requests_failed == 0
        assert eng.kv_stats()["blocks_working"] == 0
    finally:
        eng.shutdown()


def test_request_timeout_ends_only_requests_past_their_deadline(mlx_model):
    model, tok = mlx_model
    eng = Engine(model, tok, EngineConfig(max_num_seqs=4, request_timeout=1.5)).start()
    try:
        ae = AsyncEngine(eng)

        async def go():
            long = ae.generate_all([5, 6, 7], SamplingParams(max_tokens=100_000, temperature=0.0, ignore_eos=True))
            short = ae.generate_all([5, 6, 7], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
            return [r[0] for r in await asyncio.gather(long, short)]

        long, short = asyncio.run(go())
        assert long.finish_reason == "error" and long.error.startswith("request timed out after 1.5 s")
        assert len(long.token_ids) < 100_000  # cut short (how many came first depends on the machine's load)
        assert short.finish_reason == "length" and len(short.token_ids) == 4
        assert eng.kv_stats()["blocks_working"] == 0 and eng.state == "running"
    finally:
        eng.shutdown()


def test_a_parser_that_raises_fails_only_its_sequence(mlx_model):
    from vllm_mlx.plugins.interfaces import ReasoningParser

    class Exploding(ReasoningParser):
        name = "exploding"

        def feed(self, text):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls > 2:
                raise ValueError("parser bug")
            return "", text

        def finish(self):  # a busy machine may deliver the whole reply in two feeds
            raise ValueError("parser bug")

    model, tok = mlx_model
    eng = Engine(model, tok, EngineConfig(max_num_seqs=8)).start()
    try:
        ae = AsyncEngine(eng)
        params = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)

        async def go():
            bad = ae.generate_all([5, 6, 7], params, parsers=lambda i: (Exploding(tok), None))
            good = [ae.generate_all([5, 6, 7 + k], params) for k in range(4)]
            return [r[0] for r in await asyncio.gather(bad, *good)]

        bad, *good = asyncio.run(go())
        assert bad.finish_reason == "error" and "output processing failed: ValueError: parser bug" in bad.error
        assert all(r.finish_reason == "length" and len(r.token_ids) == 12 for r in good)
        assert eng.state == "running"
        time.sleep(0.2)  # the aborted sequence leaves the batch at the next step
        assert eng.num_running == 0 and eng.kv_stats()["blocks_working"] == 0
    finally:
        eng.shutdown()
