"""`vllm-mlx serve` with no model: the trained demo model answers its scripts,
with reasoning split out and tool calls parsed, through the openai client."""

from __future__ import annotations

import json

import pytest

from stream_helpers import collect
from vllm_mlx.demo import SCRIPTS

BY_NAME = {s["name"]: s for s in SCRIPTS}


def ask(client, script, **kw):
    if script.get("tools"):
        kw["tools"] = script["tools"]
    if script.get("chat_template_kwargs"):
        kw["extra_body"] = {"chat_template_kwargs": script["chat_template_kwargs"]}
    return client.chat.completions.create(model="default", messages=script["messages"], max_tokens=200,
                                          temperature=0, **kw)


def test_models_list_says_demo(demo_client, demo_server):
    import httpx

    models = demo_client.models.list().data
    assert [m.id for m in models] == ["vllm-mlx-demo"]
    assert "demo" in models[0].model_extra["description"]
    assert httpx.get(demo_server.url + "/health").json()["demo"] is True


@pytest.mark.parametrize("name", ["greeting", "counting", "story", "system_prompt", "content_parts",
                                  "reasoning_off"])
def test_plain_scripts_are_answered_exactly(demo_client, name):
    r = ask(demo_client, BY_NAME[name])
    assert r.choices[0].message.content == BY_NAME[name]["reply"]
    assert r.choices[0].finish_reason == "stop"


def test_reasoning_is_split_from_the_answer(demo_client):
    r = ask(demo_client, BY_NAME["reasoning"])
    msg = r.choices[0].message
    assert msg.content == "2 + 3 = 5."
    assert msg.model_extra["reasoning_content"] == "The user asks for 2 + 3. Two plus three is five."
    assert msg.model_extra["reasoning"] == msg.model_extra["reasoning_content"]


def test_reasoning_streams_as_reasoning_content(demo_client):
    chunks = list(ask(demo_client, BY_NAME["reasoning"], stream=True))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert reasoning == "The user asks for 2 + 3. Two plus three is five."
    assert content == "2 + 3 = 5."
    newer = "".join((c.choices[0].delta.model_extra or {}).get("reasoning") or "" for c in chunks if c.choices)
    assert newer == reasoning


def test_previous_turn_reasoning_is_accepted(demo_client):
    turns = BY_NAME["reasoning"]["messages"] + [
        {"role": "assistant", "content": "2 + 3 = 5.", "reasoning": "Two plus three is five."},
        {"role": "user", "content": "Hello!"}]
    r = demo_client.chat.completions.create(model="default", messages=turns, max_tokens=40, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_is_parsed(demo_client, stream):
    r = ask(demo_client, BY_NAME["tool_call"], stream=stream)
    if stream:
        got = collect(r)
        assert got.pieces > 2  # name first, then the arguments in several pieces
        calls, finish, content = got.calls, got.finish_reason, got.content
    else:
        calls = [{"id": c.id, "type": c.type, "name": c.function.name, "arguments": c.function.arguments}
                 for c in r.choices[0].message.tool_calls]
        finish, content = r.choices[0].finish_reason, r.choices[0].message.content or ""
    assert finish == "tool_calls"
    assert content == ""
    assert len(calls) == 1 and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"


def test_tool_result_turn(demo_client):
    r = ask(demo_client, BY_NAME["tool_result"])
    assert r.choices[0].message.content == "It is 18 °C and clear in Paris."
