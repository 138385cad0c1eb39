"""The in-process engine: batching never changes what a request gets."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from mlx_lm.generate import stream_generate

from vllm_mlx.core import AsyncEngine, Engine, EngineConfig, SamplingParams


@pytest.fixture(scope="module")
def engine(mlx_model):
    model, tok = mlx_model
    eng = Engine(model, tok, EngineConfig(max_num_seqs=32, prefill_step_size=64)).start()
    yield eng
    eng.shutdown()


def prompts(tok, count: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    words = "the quick brown fox jumps over lazy dog pack my box with five dozen jugs".split()
    return [tok.encode(" ".join(rng.choice(words) for _ in range(rng.randrange(3, 90))), add_special_tokens=False)
            for _ in range(count)]


def run(coro):
    return asyncio.run(coro)


async def collect(engine, prompt, params):
    ae = AsyncEngine(engine)
    return (await ae.generate_all(prompt, params))


def reference_ids(mlx_model, prompt, max_tokens):
    model, tok = mlx_model
    out = []
    for r in stream_generate(model, tok, prompt, max_tokens=max_tokens):
        if r.token in tok.eos_token_ids:
            break
        out.append(r.token)
    return out


def test_greedy_batch_of_24_equals_alone_equals_mlx_lm(engine, mlx_model):
    tok = mlx_model[1]
    ps = prompts(tok, 24)
    params = SamplingParams(max_tokens=24, temperature=0.0)

    async def alone():
        return [(await collect(engine, p, params))[0] for p in ps]

    async def together():
        ae = AsyncEngine(engine)
        return [r[0] for r in await asyncio.gather(*(ae.generate_all(p, params) for p in ps))]

    solo = run(alone())
    batch = run(together())
    for p, a, b in zip(ps, solo, batch):
        ref = reference_ids(mlx_model, p, 24)
        got_alone = [t for t in a.token_ids if t not in tok.eos_token_ids]
        got_batch = [t for t in b.token_ids if t not in tok.eos_token_ids]
        assert got_alone == ref
        assert got_batch == ref
        assert b.text == tok.decode(ref)
    assert len({tuple(b.token_ids) for b in batch}) > 12  # the prompts really do produce different outputs


def test_seed_is_reproducible_inside_a_batch(engine, mlx_model):
    tok = mlx_model[1]
    p = prompts(tok, 1, seed=3)[0]
    seeded = SamplingParams(max_tokens=16, temperature=1.0, seed=1234, ignore_eos=True)

    async def alone():
        return (await collect(engine, p, seeded))[0].token_ids

    async def crowded():
        ae = AsyncEngine(engine)
        noise = [ae.generate_all(q, SamplingParams(max_tokens=16, temperature=1.0, ignore_eos=True))
                 for q in prompts(tok, 6, seed=9)]
        results = await asyncio.gather(ae.generate_all(p, seeded), *noise)
        return results[0][0].token_ids

    first = run(alone())
    assert run(crowded()) == first
    other = run(collect(engine, p, SamplingParams(max_tokens=16, temperature=1.0, seed=99, ignore_eos=True)))
    assert other[0].token_ids != first


def test_n_sequences_logit_bias_and_ignore_eos(engine, mlx_model):
    tok = mlx_model[1]
    p = prompts(tok, 1, seed=5)[0]
    forced = tok.encode(" fox", add_special_tokens=False)[0]
    res = run(collect(engine, p, SamplingParams(max_tokens=6, temperature=0.8, n=3, ignore_eos=True,
                                                logit_bias={forced: 100.0})))
    assert [r.index for r in res] == [0, 1, 2]
    for r in res:
        assert r.token_ids == [forced] * 6 and r.finish_reason == "length"


def test_min_tokens_masks_stop_tokens(engine, mlx_model):
    tok = mlx_model[1]
    p = prompts(tok, 1, seed=6)[0]
    first = run(collect(engine, p, SamplingParams(max_tokens=4, temperature=0.0)))[0].token_ids[0]
    # make the greedy first token a stop token; min_tokens must keep generating past it
    res = run(collect(engine, p, SamplingParams(max_tokens=5, temperature=0.0, stop_token_ids=[first],
                                                min_tokens=3)))[0]
    assert first not in res.token_ids[:3] and len(res.token_ids) >= 3
    stopped = run(collect(engine, p, SamplingParams(max_tokens=5, temperature=0.0, stop_token_ids=[first])))[0]
    assert stopped.token_ids == [first] and stopped.finish_reason == "stop" and stopped.stop_reason == first
    assert stopped.text == ""


def test_closing_the_stream_frees_the_slot(engine, mlx_model):
    tok = mlx_model[1]
    p = prompts(tok, 1, seed=7)[0]

    async def go():
        ae = AsyncEngine(engine)
        gen = ae.generate(p, SamplingParams(max_tokens=2000, temperature=0.0, ignore_eos=True))
        async for _ in gen:
            break
        await gen.aclose()

    run(go())
    deadline = time.monotonic() + 5
    while engine.num_running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.num_running == 0 and engine.num_waiting == 0


def test_unusable_prompt_fails_alone(engine, mlx_model):
    tok = mlx_model[1]
    good = prompts(tok, 1, seed=8)[0]

    async def go():
        ae = AsyncEngine(engine)
        return await asyncio.gather(
            ae.generate_all([], SamplingParams(max_tokens=4)),
            ae.generate_all([10 ** 8], SamplingParams(max_tokens=4)),
            ae.generate_all(good, SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True)))

    empty, out_of_vocab, fine = run(go())
    assert empty[0].finish_reason == "error" and "empty" in empty[0].error
    assert out_of_vocab[0].finish_reason == "error" and "vocabulary" in out_of_vocab[0].error
    assert fine[0].finish_reason == "length" and len(fine[0].token_ids) == 4
    assert engine.counters.errors == []


def test_long_prompt_prefill_is_interleaved_with_decoding(engine, mlx_model):
    """With prefill_step_size=64 a 450-token prompt takes ~7 steps to prefill; a
    stream that is already running must keep getting a token at each of them."""
    tok = mlx_model[1]
    short = prompts(tok, 1, seed=10)[0]
    long = (prompts(tok, 20, seed=11)[0] * 60)[:450]

    async def go():
        ae = AsyncEngine(engine)
        running = ae.generate(short, SamplingParams(max_tokens=300, temperature=0.0, ignore_eos=True))
        await running.__anext__()  # A is decoding
        b_first = asyncio.Event()
        a_tokens_during_prefill = 0

        async def consume_b():
            async for d in ae.generate(long, SamplingParams(max_tokens=2, temperature=0.0, ignore_eos=True)):
                b_first.set()

        b_task = asyncio.create_task(consume_b())
        async for d in running:
            if b_first.is_set():
                break
            a_tokens_during_prefill += len(d.token_ids)
        await running.aclose()
        await b_task
        return a_tokens_during_prefill

    assert run(go()) >= 5


def test_a_dead_engine_fails_requests_instead_of_hanging(mlx_model):
    model, tok = mlx_model
    eng = Engine(model, tok, EngineConfig(max_num_seqs=4)).start()
    try:
        def broken(exc):
            raise RuntimeError("recovery failed too")

        def bad_step():
            raise RuntimeError("step exploded")

        eng._recover = broken
        eng._scheduler.step = bad_step

        async def ask():
            ae = AsyncEngine(eng)
            return await asyncio.wait_for(ae.generate_all([5, 6, 7], SamplingParams(max_tokens=3)), 10)

        first = run(ask())[0]
        assert first.finish_reason == "error" and "recovery failed too" in first.error
        assert eng.state == "dead"
        later = run(ask())[0]  # submitted after death: answered at once, not left waiting
        assert later.finish_reason == "error"
    finally:
        eng.shutdown()
