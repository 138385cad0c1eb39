"""Structured outputs through the real server: a random-weight model under a
grammar writes JSON that validates, alone or batched with free requests."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "color": {"type": "string", "enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "age", "color", "ok"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}
MSG = [{"role": "user", "content": "Describe a person as JSON."}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 10}, "days": {"type": "integer",
                                     "minimum": 1, "maximum": 9}},
    "required": ["city", "days"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
    "required": ["zone"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def tool_client(random_model_dir, tmp_path_factory):
    """The random model with room for tool definitions in the prompt (the shared server has 512)."""
    from openai import OpenAI

    from server_process import ServerProcess

    srv = ServerProcess([str(random_model_dir), "--served-model-name", "random-llama", "--max-model-len", "2048"],
                        log_path=tmp_path_factory.mktemp("logs") / "structured.log").wait_ready()
    yield OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    srv.stop()


def test_json_schema_holds_for_20_seeds_batched_with_free_requests(async_client_factory):
    async def run():
        client = async_client_factory()
        free_kw = dict(model="random-llama", messages=MSG, max_tokens=24, temperature=0)
        alone = (await client.chat.completions.create(**free_kw)).choices[0].message.content
        constrained = [client.chat.completions.create(model="random-llama", messages=MSG, max_tokens=200,
                                                      temperature=1.0, seed=seed, response_format=FORMAT)
                       for seed in range(20)]
        free = [client.chat.completions.create(**free_kw) for _ in range(3)]
        results = await asyncio.gather(*constrained, *free)
        return alone, results[:20], results[20:]

    alone, constrained, free = asyncio.run(run())
    for r in constrained:
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
    assert len({r.choices[0].message.content for r in constrained}) > 5  # the seeds really differ
    assert [r.choices[0].message.content for r in free] == [alone] * 3  # free requests are untouched


def test_json_object_streams_valid_json(client):
    chunks = client.chat.completions.create(model="random-llama", messages=MSG, max_tokens=120, temperature=0.7,
                                            seed=3, stream=True, response_format={"type": "json_object"})
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize("stream", [False, True])
def test_named_tool_choice_forces_that_call(tool_client, stream):
    client = tool_client
    from stream_helpers import collect

    r = client.chat.completions.create(model="random-llama", messages=MSG, max_tokens=120, temperature=0.8, seed=1,
                                       tools=[WEATHER, TIME], stream=stream,
                                       tool_choice={"type": "function", "function": {"name": "get_weather"}})
    if stream:
        got = collect(r)
        calls = [(c["name"], c["arguments"]) for c in got.calls]
        assert got.content == ""
    else:
        msg = r.choices[0].message
        calls = [(c.function.name, c.function.arguments) for c in msg.tool_calls]
        assert msg.content is None
    assert len(calls) == 1 and calls[0][0] == "get_weather"
    jsonschema.validate(json.loads(calls[0][1]), WEATHER["function"]["parameters"])


@pytest.mark.parametrize("stream", [False, True])
def test_required_tool_choice_gives_calls(tool_client, stream):
    client = tool_client
    from stream_helpers import collect

    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}
    for seed in range(3):
        r = client.chat.completions.create(model="random-llama", messages=MSG, max_tokens=200, temperature=0.8,
                                           seed=seed, tools=[WEATHER, TIME], tool_choice="required", stream=stream,
                                           parallel_tool_calls=False)  # random weights: one call, or it rambles
        if stream:
            got = collect(r)
            calls, finish = [(c["name"], c["arguments"]) for c in got.calls], got.finish_reason
        else:
            calls = [(c.function.name, c.function.arguments) for c in r.choices[0].message.tool_calls]
            finish = r.choices[0].finish_reason
        assert finish == "tool_calls" and calls
        for name, arguments in calls:
            jsonschema.validate(json.loads(arguments), schemas[name])


def test_invalid_schema_is_a_400(client):
    import openai

    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object",
                                                                          "properties": {"a": {"type": 7}}}}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="random-llama", messages=MSG, max_tokens=5, response_format=bad)
    body = err.value.body
    assert body["param"] == "response_format" and body["type"] == "invalid_request_error"
    assert "Invalid JSON Schema" in body["message"]


@pytest.mark.parametrize("prefix_caching", [False, True])
def test_grammar_survives_preemption_and_prefix_hits(mlx_model, prefix_caching):
    """Constrained, seeded requests preempted for KV memory (and resumed), or
    served from cached prefixes, write exactly what they write with memory to
    spare and nothing cached: the matcher follows the tokens, not the steps."""
    from test_kv_cache import kv_bytes, make_engine, run_all, token_lists

    from vllm_mlx.core import SamplingParams
    from vllm_mlx.core.guided import GrammarCompiler

    model, tok = mlx_model
    plain = make_engine(mlx_model, prefix_caching=False)
    tight = make_engine(mlx_model, kv_cache_memory=kv_bytes(mlx_model, 24), prefix_caching=prefix_caching)
    try:
        guide = GrammarCompiler(tok, plain.vocab_size, plain.eos_token_ids).compile_json_schema(SCHEMA)
        prompts = token_lists(plain.vocab_size, 12, 40, 60, seed=5)
        params = SamplingParams(max_tokens=64, temperature=0.9, seed=11, guide=guide)
        want = run_all(plain, prompts, params)
        got = run_all(tight, prompts, params)
        assert tight.kv_stats()["preemptions"] > 0
        assert [r.token_ids for r in got] == [r.token_ids for r in want]
        if prefix_caching:  # with room to keep them, the same prompts again hit the prefix cache
            roomy = make_engine(mlx_model, prefix_caching=True)
            try:
                run_all(roomy, prompts[:4], params, concurrent=False)
                again = run_all(roomy, prompts[:4], params, concurrent=False)
                assert roomy.kv_stats()["prefix_hits"] > 0
                assert [r.token_ids for r in again] == [r.token_ids for r in want[:4]]
            finally:
                roomy.shutdown()
        for r in got:
            if r.finish_reason == "stop":
                jsonschema.validate(json.loads(r.text), SCHEMA)
        assert sum(r.finish_reason == "stop" for r in got) >= 6
    finally:
        plain.shutdown()
        tight.shutdown()


def test_strict_schema_allows_no_unlisted_properties(mlx_model):
    """Plain JSON Schema lets an object carry any extra key; strict (as OpenAI defines
    it) means only the listed ones, so a rambling model cannot invent keys."""
    from vllm_mlx.core.guided import GrammarCompiler
    from vllm_mlx.server.structured import closed_objects

    _, tok = mlx_model
    compiler = GrammarCompiler(tok, tok.vocab_size, [tok.eos_token_id])
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"},
                                               "inner": {"type": "object", "properties": {"n": {"type": "integer"}}}}}

    def accepts(schema, text):
        ids = tok.encode(text, add_special_tokens=False)
        return compiler.compile_json_schema(schema).matcher.validate_tokens(ids) == len(ids)

    for text in ('{"ok": true, "extra": 1}', '{"inner": {"n": 1, "extra": 2}}'):
        assert accepts(schema, text)
        assert not accepts(closed_objects(schema), text)
    assert accepts(closed_objects(schema), '{"ok": true, "inner": {"n": 1}}')
    assert closed_objects({"type": "object", "additionalProperties": True}) == \
        {"type": "object", "additionalProperties": True}


def test_each_of_n_choices_follows_the_schema(tool_client):
    r = tool_client.chat.completions.create(model="random-llama", messages=MSG, max_tokens=200, temperature=1.0,
                                            seed=5, n=3, response_format=FORMAT)
    assert len(r.choices) == 3
    for choice in r.choices:
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)
