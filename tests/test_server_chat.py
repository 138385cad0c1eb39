"""Chat completions through the real server with the official openai client."""

from __future__ import annotations

import asyncio

import pytest
from mlx_lm.generate import stream_generate

MSG = [{"role": "user", "content": "the quick brown fox"}]


def reference_text(mlx_model, messages, max_tokens):
    model, tok = mlx_model
    prompt = tok.encode(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
                        add_special_tokens=False)
    ids = []
    for r in stream_generate(model, tok, prompt, max_tokens=max_tokens):
        if r.token in tok.eos_token_ids:
            break
        ids.append(r.token)
    return tok.decode(ids), len(prompt)


def test_non_streaming_matches_mlx_lm(client, mlx_model):
    r = client.chat.completions.create(model="random-llama", messages=MSG, max_tokens=20, temperature=0)
    ref, prompt_len = reference_text(mlx_model, MSG, 20)
    assert r.choices[0].message.content == ref
    assert r.choices[0].message.role == "assistant"
    assert r.usage.prompt_tokens == prompt_len
    assert r.usage.completion_tokens <= 20 and r.usage.total_tokens == prompt_len + r.usage.completion_tokens
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")


def test_default_alias_and_streaming_with_usage(client):
    full = client.chat.completions.create(model="default", messages=MSG, max_tokens=15, temperature=0)
    stream = client.chat.completions.create(model="default", messages=MSG, max_tokens=15, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_stop_string_cuts_output_and_is_not_emitted(client):
    base = client.chat.completions.create(model="default", messages=MSG, max_tokens=30, temperature=0,
                                          extra_body={"ignore_eos": True})
    text = base.choices[0].message.content
    assert len(text) > 12
    stop = text[6:10]
    cut = text[: text.index(stop)]
    for stream in (False, True):
        r = client.chat.completions.create(model="default", messages=MSG, max_tokens=30, temperature=0,
                                           stop=[stop, "zzzz-never"], stream=stream,
                                           extra_body={"ignore_eos": True})
        if stream:
            chunks = [c for c in r if c.choices]
            got = "".join(c.choices[0].delta.content or "" for c in chunks)
            finish = chunks[-1].choices[0].finish_reason
        else:
            got, finish = r.choices[0].message.content, r.choices[0].finish_reason
        assert got == cut and finish == "stop"


def test_seed_reproducible_and_n_choices(client):
    kw = dict(model="default", messages=MSG, max_tokens=12, temperature=1.0, seed=42, n=3,
              extra_body={"ignore_eos": True})
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert len({c.message.content for c in a.choices}) > 1
    assert a.usage.completion_tokens == 36


def test_logprobs_and_top_logprobs(client):
    r = client.chat.completions.create(model="default", messages=MSG, max_tokens=8, temperature=0,
                                       logprobs=True, top_logprobs=3, extra_body={"ignore_eos": True})
    content = r.choices[0].logprobs.content
    assert len(content) == 8
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        tops = [t.logprob for t in entry.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        assert entry.top_logprobs[0].token == entry.token  # greedy picks the most likely token
        assert entry.logprob == pytest.approx(tops[0], abs=1e-5)


def test_batch_of_24_concurrent_equals_alone(async_client_factory, mlx_model):
    convs = [[{"role": "user", "content": f"pack my box {i} " + "fox " * (i % 7)}] for i in range(24)]

    async def one(client, messages):
        r = await client.chat.completions.create(model="default", messages=messages, max_tokens=16,
                                                 temperature=0)
        return r.choices[0].message.content

    async def alone():
        async with async_client_factory() as client:
            return [await one(client, m) for m in convs]

    async def together():
        async with async_client_factory() as client:
            return await asyncio.gather(*(one(client, m) for m in convs))

    solo = asyncio.run(alone())
    crowd = asyncio.run(together())
    assert crowd == solo
    for m, text in zip(convs, solo):
        assert text == reference_text(mlx_model, m, 16)[0]


def test_chat_template_kwargs_reach_the_template(client, mlx_model):
    # enable_thinking=False makes this template add an empty think block to the prompt
    on = client.chat.completions.create(model="default", messages=MSG, max_tokens=1, temperature=0)
    off = client.chat.completions.create(model="default", messages=MSG, max_tokens=1, temperature=0,
                                         extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert off.usage.prompt_tokens > on.usage.prompt_tokens
