"""Prefix caching through the real server: usage reports cached tokens, a
conversation re-prefills only what is new, cache_salt and /metrics."""

from __future__ import annotations

import httpx
import openai
import pytest

SYSTEM = ("You are a meticulous assistant for a hardware shop. " * 3).strip()


def chat(client, messages, **kw):
    return client.chat.completions.create(model="random-llama", messages=messages, max_tokens=4, temperature=0, **kw)


def test_usage_reports_cached_prompt_tokens(client):
    first = chat(client, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hammers?"}])
    second = chat(client, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "nails?"}])
    assert first.usage.prompt_tokens_details.cached_tokens < second.usage.prompt_tokens_details.cached_tokens
    assert second.usage.prompt_tokens_details.cached_tokens >= second.usage.prompt_tokens - 60
    stream = client.chat.completions.create(
        model="random-llama", messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "saws?"}],
        max_tokens=4, temperature=0, stream=True, stream_options={"include_usage": True})
    usage = [c.usage for c in stream if c.usage][-1]
    assert usage.prompt_tokens_details.cached_tokens >= usage.prompt_tokens - 60


def test_conversation_turns_prefill_only_the_new_messages(client):
    messages = [{"role": "system", "content": SYSTEM}]
    previous_prompt = None
    for turn in range(10):
        messages.append({"role": "user", "content": f"q{turn}: item {turn * 7}?"})
        r = chat(client, messages)
        prefilled = r.usage.prompt_tokens - r.usage.prompt_tokens_details.cached_tokens
        if previous_prompt is not None:
            new_tokens = r.usage.prompt_tokens - previous_prompt
            assert prefilled <= new_tokens, (turn, prefilled, new_tokens)
        previous_prompt = r.usage.prompt_tokens
        messages.append({"role": "assistant", "content": f"a{turn}"})


def test_cache_salt_isolates_and_is_validated(client):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "salted?"}]
    chat(client, messages)
    salted = chat(client, messages, extra_body={"cache_salt": "tenant-42"})
    assert salted.usage.prompt_tokens_details.cached_tokens == 0
    again = chat(client, messages, extra_body={"cache_salt": "tenant-42"})
    assert again.usage.prompt_tokens_details.cached_tokens > 0
    with pytest.raises(openai.BadRequestError) as err:
        chat(client, messages, extra_body={"cache_salt": ""})
    assert err.value.body["param"] == "cache_salt"


def test_metrics_expose_kv_cache_and_prefix_counters(server, client):
    chat(client, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "metrics?"}])
    text = httpx.get(server.url + "/metrics").text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0] + ("" if "use=" not in name else name[name.index("use="):])] = float(value)
    for name in ("vllm:kv_cache_usage_perc", "vllm:prefix_cache_queries", "vllm:prefix_cache_hits",
                 "vllm:num_preemptions_total"):
        assert name in values, name
    assert 0 < values["vllm:prefix_cache_hits"] <= values["vllm:prefix_cache_queries"]
    health = httpx.get(server.url + "/health").json()
    assert health["kv_cache"]["blocks_total"] > 0 and health["cache_policy"] == "default"
