"""Legacy completions through the real server."""

from __future__ import annotations

from mlx_lm.generate import stream_generate


def test_completion_matches_mlx_lm_and_keeps_leading_space(client, mlx_model):
    model, tok = mlx_model
    prompt = "the lazy dog"
    r = client.completions.create(model="default", prompt=prompt, max_tokens=12, temperature=0)
    ids = []
    for step in stream_generate(model, tok, tok.encode(prompt), max_tokens=12):
        if step.token in tok.eos_token_ids:
            break
        ids.append(step.token)
    expected = tok.decode(tok.encode(prompt) + ids)[len(prompt):]
    assert r.choices[0].text == expected
    assert r.usage.prompt_tokens == len(tok.encode(prompt))


def test_token_id_prompts_batch_and_echo(client, mlx_model):
    tok = mlx_model[1]
    ids = tok.encode("five dozen", add_special_tokens=False)
    r = client.completions.create(model="default", prompt=[ids, ids], max_tokens=4, temperature=0, echo=True)
    assert len(r.choices) == 2 and [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].text == r.choices[1].text
    assert r.choices[0].text.startswith("five dozen")


def test_streaming_completion_with_logprobs(client):
    full = client.completions.create(model="default", prompt="pack my box", max_tokens=6, temperature=0,
                                     logprobs=2, extra_body={"ignore_eos": True})
    lp = full.choices[0].logprobs
    assert len(lp.tokens) == 6 and all(len(t) <= 2 for t in lp.top_logprobs)
    assert "".join(lp.tokens) == full.choices[0].text
    chunks = list(client.completions.create(model="default", prompt="pack my box", max_tokens=6, temperature=0,
                                            stream=True, extra_body={"ignore_eos": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
