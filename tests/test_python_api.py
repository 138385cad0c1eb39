"""The in-process Python API: `from vllm_mlx import LLM, SamplingParams`."""

from __future__ import annotations

import asyncio

import pytest
from mlx_lm.generate import stream_generate


@pytest.fixture(scope="module")
def llm(random_model_dir):
    from vllm_mlx import LLM

    with LLM(str(random_model_dir), max_num_seqs=16) as llm:
        yield llm


def test_generate_batches_and_equals_mlx_lm(llm, mlx_model):
    from vllm_mlx import SamplingParams

    model, tok = mlx_model
    prompts = ["the quick brown fox", "pack my box with five dozen", "jumps over", "lazy dog and the cat"]
    outs = llm.generate(prompts, SamplingParams(max_tokens=12, temperature=0.0))
    assert [o.prompt for o in outs] == prompts
    for prompt, out in zip(prompts, outs):
        want = []
        for r in stream_generate(model, tok, prompt, max_tokens=12):
            if r.token in tok.eos_token_ids:
                break
            want.append(r.token)
        assert out.outputs[0].token_ids == want
        assert out.prompt_token_ids == tok.encode(prompt)
        assert out.outputs[0].finish_reason in ("length", "stop") and out.finished


def test_generate_token_ids_n_logprobs_and_per_prompt_params(llm):
    from vllm_mlx import SamplingParams

    out = llm.generate([[5, 6, 7, 8]], SamplingParams(max_tokens=5, temperature=0.8, seed=3, n=3, logprobs=2,
                                                      ignore_eos=True))[0]
    assert out.prompt is None and len(out.outputs) == 3
    for c in out.outputs:
        assert len(c.token_ids) == 5 and len(c.logprobs) == 5 and c.cumulative_logprob < 0
        assert all(c.token_ids[i] in c.logprobs[i] for i in range(5))
    a, b = llm.generate(["one", "two"], [SamplingParams(max_tokens=2, ignore_eos=True, temperature=0),
                                        SamplingParams(max_tokens=4, ignore_eos=True, temperature=0)])
    assert (len(a.outputs[0].token_ids), len(b.outputs[0].token_ids)) == (2, 4)
    with pytest.raises(ValueError):
        llm.generate(["one", "two"], [SamplingParams()])


def test_chat_applies_the_template_and_reuses_the_prefix_cache(llm):
    from vllm_mlx import SamplingParams

    system = {"role": "system", "content": "You answer in riddles about hardware shops. " * 8}
    convos = [[system, {"role": "user", "content": q}] for q in ("hammers?", "nails?")]
    first = llm.chat(convos[0], SamplingParams(max_tokens=3, temperature=0))[0]
    second = llm.chat(convos[1], SamplingParams(max_tokens=3, temperature=0))[0]
    text = llm._llm.render_chat(convos[1])
    assert second.prompt_token_ids == llm.tokenizer.encode(text, add_special_tokens=False)
    assert first.num_cached_tokens == 0 and second.num_cached_tokens > 64


def test_async_llm_streams_from_concurrent_tasks(random_model_dir):
    from vllm_mlx import AsyncLLM, SamplingParams

    llm = AsyncLLM(str(random_model_dir), max_num_seqs=8)
    try:
        async def main():
            params = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)

            async def collect(prompt):
                ids = []
                async for piece in llm.stream(prompt, params):
                    ids += piece.token_ids
                return ids

            streamed = await asyncio.gather(*(collect(p) for p in ("alpha", "beta gamma", "delta")))
            whole = await asyncio.gather(*(llm.generate(p, params) for p in ("alpha", "beta gamma", "delta")))
            return streamed, [w.outputs[0].token_ids for w in whole]

        streamed, whole = asyncio.run(main())
        assert streamed == whole and all(len(s) == 6 for s in streamed)
    finally:
        llm.shutdown()
