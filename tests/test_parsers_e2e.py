"""A model that really writes tool calls and reasoning, through the real server
and the openai client: streamed and whole replies agree, parallel calls, text
before a call, a malformed call, Qwen3 and DeepSeek-R1 reasoning, and the same
answers when many requests run at once."""

from __future__ import annotations

import asyncio
import json

import pytest

from scripted_model import BY_NAME
from stream_helpers import collect


def _serve(model_dir, tmp_path_factory, name, args):
    from openai import AsyncOpenAI, OpenAI

    from server_process import ServerProcess

    srv = ServerProcess([str(model_dir), *args], log_path=tmp_path_factory.mktemp("logs") / f"{name}.log").wait_ready()
    kw = dict(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    return srv, OpenAI(**kw), lambda: AsyncOpenAI(**kw)


@pytest.fixture(scope="module")
def hermes(scripted_model_dir, tmp_path_factory):
    """Parsers chosen by the server: hermes detected from the chat template, qwen3 reasoning from the loader."""
    srv, client, make_async = _serve(scripted_model_dir, tmp_path_factory, "hermes", ["--reasoning-parser", "qwen3"])
    yield client, make_async
    srv.stop()


@pytest.fixture(scope="module")
def xml_r1(scripted_model_dir, tmp_path_factory):
    srv, client, make_async = _serve(scripted_model_dir, tmp_path_factory, "xml_r1",
                                     ["--tool-call-parser", "qwen3_coder", "--reasoning-parser", "deepseek_r1"])
    yield client, make_async
    srv.stop()


def ask(client, name, stream=False, **kw):
    script = BY_NAME[name]
    if script.get("tools"):
        kw["tools"] = script["tools"]
    return client.chat.completions.create(model="default", messages=script["messages"], max_tokens=120,
                                          temperature=0, stream=stream, **kw)


def reply(client, name, stream):
    """(content, reasoning, [(name, arguments dict)], finish_reason), either way."""
    r = ask(client, name, stream)
    if stream:
        got = collect(r)
        assert got.reasoning == got.reasoning_content
        for call in got.calls:
            assert call["id"].startswith("call_") and call["type"] == "function"
        return (got.content, got.reasoning, [(c["name"], json.loads(c["arguments"])) for c in got.calls],
                got.finish_reason)
    choice = r.choices[0]
    extra = choice.message.model_extra or {}
    assert extra.get("reasoning") == extra.get("reasoning_content")
    calls = choice.message.tool_calls or []
    for call in calls:
        assert call.id.startswith("call_") and call.type == "function"
    return (choice.message.content or "", extra.get("reasoning") or "",
            [(c.function.name, json.loads(c.function.arguments)) for c in calls], choice.finish_reason)


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_hermes_calls(hermes, stream):
    content, reasoning, calls, finish = reply(hermes[0], "parallel", stream)
    assert (content, reasoning, finish) == ("", "", "tool_calls")
    assert calls == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]


@pytest.mark.parametrize("stream", [False, True])
def test_text_before_a_call_stays_content(hermes, stream):
    content, _, calls, finish = reply(hermes[0], "text_then_call", stream)
    assert content.strip() == "Let me check." and "<tool_call>" not in content
    assert calls == [("get_weather", {"city": "Oslo"})] and finish == "tool_calls"


def test_malformed_call_comes_back_as_content(hermes):
    content, _, calls, finish = reply(hermes[0], "malformed", False)
    assert content == BY_NAME["malformed"]["reply"] and calls == [] and finish == "stop"


def test_malformed_call_streamed_after_its_header_keeps_the_model_text(hermes):
    """Streaming cannot take back a call header already sent: the call carries the
    model's own (invalid) arguments, like vLLM; no markup leaks into content."""
    got = collect(ask(hermes[0], "malformed", stream=True))
    assert got.content == ""
    assert [(c["name"], c["arguments"]) for c in got.calls] == [("get_weather", '{"city": Bern}')]


@pytest.mark.parametrize("stream", [False, True])
def test_qwen3_reasoning(hermes, stream):
    content, reasoning, calls, finish = reply(hermes[0], "think", stream)
    assert (reasoning, content, calls, finish) == ("Two plus three is five.", "2 + 3 = 5.", [], "stop")


def test_tool_choice_none_is_plain_text(hermes):
    r = ask(hermes[0], "plain", tool_choice="none")
    assert r.choices[0].message.content == BY_NAME["plain"]["reply"]


@pytest.mark.parametrize("stream", [False, True])
def test_qwen3_coder_xml_call_after_reasoning(xml_r1, stream):
    content, reasoning, calls, finish = reply(xml_r1[0], "xml", stream)
    assert (reasoning, content, finish) == ("Lima, three days.", "", "tool_calls")
    assert calls == [("get_weather", {"city": "Lima", "days": 3})]


@pytest.mark.parametrize("stream", [False, True])
def test_deepseek_r1_reasoning_without_opening_tag(xml_r1, stream):
    content, reasoning, calls, finish = reply(xml_r1[0], "think_r1", stream)
    assert (reasoning, content, finish) == ("Four plus four is eight.", "4 + 4 = 8.", "stop")


def test_concurrent_requests_match_solo_answers(hermes, xml_r1):
    jobs = [(hermes, n) for n in ("parallel", "text_then_call", "think", "plain")] + \
           [(xml_r1, n) for n in ("xml", "think_r1")]
    solo = {(id(srv), name, stream): reply(srv[0], name, stream) for srv, name in jobs for stream in (False, True)}

    async def one(srv, name, stream):
        script = BY_NAME[name]
        kw = {"tools": script["tools"]} if script.get("tools") else {}
        client = srv[1]()
        r = await client.chat.completions.create(model="default", messages=script["messages"], max_tokens=120,
                                                 temperature=0, stream=stream, **kw)
        if not stream:
            m = r.choices[0].message
            return ((m.content or ""), (m.model_extra or {}).get("reasoning") or "",
                    [(c.function.name, json.loads(c.function.arguments)) for c in m.tool_calls or []],
                    r.choices[0].finish_reason)
        chunks = [c async for c in r]
        got = collect(chunks)
        return (got.content, got.reasoning, [(c["name"], json.loads(c["arguments"])) for c in got.calls],
                got.finish_reason)

    async def all_at_once():
        keys = [(srv, name, stream) for srv, name in jobs for stream in (False, True)] * 2
        return keys, await asyncio.gather(*(one(*k) for k in keys))

    keys, results = asyncio.run(all_at_once())
    for (srv, name, stream), got in zip(keys, results):
        assert got == solo[(id(srv), name, stream)], (name, stream)


def test_parsers_turned_off_return_the_raw_reply(scripted_model_dir, tmp_path_factory):
    srv, client, _ = _serve(scripted_model_dir, tmp_path_factory, "raw",
                            ["--tool-call-parser", "none", "--reasoning-parser", "none"])
    try:
        content, reasoning, calls, finish = reply(client, "parallel", False)
        assert (content, reasoning, calls, finish) == (BY_NAME["parallel"]["reply"], "", [], "stop")
        assert reply(client, "think", True)[0] == BY_NAME["think"]["reply"]
    finally:
        srv.stop()
