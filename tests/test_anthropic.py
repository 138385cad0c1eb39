"""Anthropic Messages through the real server and the official anthropic SDK: text, tools,
thinking, every stop reason, streaming grammar event by event, count_tokens, auth by both
headers, errors in Anthropic's shape, models list for both SDKs, aliases, prefix-cache hits."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import anthropic
import httpx
import pytest

from conftest import API_KEY
from scripted_model import BY_NAME

PLUGIN = str(Path(__file__).parent / "plugins" / "exploding_reasoning.py")
WEATHER_TOOL = {"name": "get_weather", "description": "Weather in a city.",
                "input_schema": BY_NAME["parallel"]["tools"][0]["function"]["parameters"]}


@pytest.fixture(scope="module")
def scripted(scripted_model_dir, tmp_path_factory):
    """The scripted model (hermes tool calls, qwen3 reasoning through a parser that fails on request),
    Claude Code style aliases, and pings every 1 ms while a request waits for its first token."""
    from server_process import ServerProcess

    srv = ServerProcess([str(scripted_model_dir), "--served-model-name", "scripted", "--plugin", PLUGIN,
                         "--reasoning-parser", "qwen3_exploding", "--model-alias", "claude-*=default",
                         "--model-alias", "claude-exact-1=scripted", "--ping-interval", "0.001"],
                        log_path=tmp_path_factory.mktemp("logs") / "anthropic.log").wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def claude(scripted):
    return anthropic.Anthropic(base_url=scripted.url, api_key="unused", max_retries=0, timeout=120)


def ask(client, name, stream=False, **kw):
    script = BY_NAME[name]
    if script.get("tools"):
        kw.setdefault("tools", [WEATHER_TOOL])
    kw.setdefault("max_tokens", 120)
    kw.setdefault("messages", script["messages"])
    args = dict(model="claude-local-test", extra_body={"temperature": 0}, **kw)
    if stream:
        with client.messages.stream(**args) as s:
            return s.get_final_message()
    return client.messages.create(**args)


def blocks(message):
    out = []
    for b in message.content:
        if b.type == "text":
            out.append(("text", b.text))
        elif b.type == "thinking":
            assert b.signature, "every thinking block carries a signature"
            out.append(("thinking", b.thinking))
        elif b.type == "tool_use":
            assert b.id.startswith("toolu_")
            out.append(("tool_use", b.name, b.input))
    return out


def raw_stream(srv, body, headers=None):
    """(event name, data) pairs of a /v1/messages stream, checked frame by frame."""
    frames = []
    with httpx.stream("POST", srv.url + "/v1/messages", json={**body, "stream": True}, timeout=120,
                      headers={"Accept": "application/json", **(headers or {})}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    assert "[DONE]" not in text
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        lines = frame.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        name, data = lines[0][7:], json.loads(lines[1][6:])
        assert data["type"] == name
        frames.append((name, data))
    return frames


def check_grammar(frames):
    """message_start, ping*, blocks (start, deltas, stop; one open at a time, indexes 0, 1, ...),
    message_delta, message_stop."""
    names = [n for n, _ in frames]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    usage = frames[0][1]["message"]["usage"]
    assert usage["input_tokens"] > 0 and "output_tokens" in usage
    open_index, next_index = None, 0
    for name, data in frames[1:-2]:
        if name == "ping":
            continue
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index, next_index = data["index"], next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        else:
            raise AssertionError(f"unexpected event {name}")
    assert open_index is None
    delta = frames[-2][1]
    assert delta["delta"]["stop_reason"] and delta["usage"]["output_tokens"] > 0
    return delta


# -- text, stop reasons ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_plain_text_end_turn(claude, stream):
    m = ask(claude, "plain", stream)
    assert blocks(m) == [("text", BY_NAME["plain"]["reply"])]
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert m.model == "claude-local-test" and m.id.startswith("msg_") and m.role == "assistant"
    count = claude.messages.count_tokens(model="claude-local-test", messages=BY_NAME["plain"]["messages"])
    assert m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0) == count.input_tokens
    assert m.usage.output_tokens > 5


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence(claude, stream):
    m = ask(claude, "plain", stream, stop_sequences=["nice", "zebra"])
    assert blocks(m) == [("text", "Hello there, ")]
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", "nice")


@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens(claude, stream):
    m = ask(claude, "plain", stream, max_tokens=3)
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 3


def test_max_tokens_beyond_the_context_is_cut_to_fit(server):
    """Claude Code asks for 32k tokens whatever the model: the reply gets the room left and,
    when it runs out, says so with model_context_window_exceeded."""
    c = anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)
    with c.messages.stream(model="claude-x", max_tokens=64000, messages=[{"role": "user", "content": "go " * 150}],
                           extra_body={"temperature": 0, "top_k": 1}) as s:
        m = s.get_final_message()
    assert m.stop_reason == "model_context_window_exceeded"
    assert m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0) + m.usage.output_tokens == 512


def test_stream_grammar_event_by_event(scripted):
    frames = raw_stream(scripted, {"model": "claude-x", "max_tokens": 60, "temperature": 0,
                                   "messages": BY_NAME["think"]["messages"], "thinking": {"type": "enabled",
                                                                                       "budget_tokens": 500}})
    delta = check_grammar(frames)
    assert frames[1][0] == "ping"
    starts = [d["content_block"]["type"] for n, d in frames if n == "content_block_start"]
    assert starts == ["thinking", "text"]
    thinking = [d for n, d in frames if n == "content_block_delta" and d["index"] == 0]
    assert {d["delta"]["type"] for d in thinking[:-1]} == {"thinking_delta"}
    assert thinking[-1]["delta"]["type"] == "signature_delta" and thinking[-1]["delta"]["signature"]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    start_usage = frames[0][1]["message"]["usage"]
    assert delta["usage"]["input_tokens"] + delta["usage"]["cache_read_input_tokens"] == start_usage["input_tokens"]


def test_pings_while_a_long_prompt_is_prefilled(scripted):
    frames = raw_stream(scripted, {"model": "claude-x", "max_tokens": 2, "system": "filler " * 500,
                                   "messages": [{"role": "user", "content": "Hello!"}]})
    check_grammar(frames)
    before_content = [n for n, _ in frames[1:] if n in ("ping", "content_block_start")]
    # the ping that follows message_start, then at least one more while the ~2,500-token prompt was prefilled
    assert before_content.index("content_block_start") >= 2, "pings kept the stream alive during the prefill"


# -- tools -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls(claude, stream):
    m = ask(claude, "parallel", stream)
    assert blocks(m) == [("tool_use", "get_weather", {"city": "Paris"}), ("tool_use", "get_weather", {"city": "Rome"})]
    assert m.stop_reason == "tool_use"


@pytest.mark.parametrize("stream", [False, True])
def test_text_then_tool_call(claude, stream):
    m = ask(claude, "text_then_call", stream)
    kinds = blocks(m)
    assert kinds[0][0] == "text" and kinds[0][1].strip() == "Let me check."
    assert kinds[1:] == [("tool_use", "get_weather", {"city": "Oslo"})] and m.stop_reason == "tool_use"


def test_tool_input_streams_as_input_json_delta(scripted):
    frames = raw_stream(scripted, {"model": "claude-x", "max_tokens": 120, "temperature": 0,
                                   "messages": BY_NAME["parallel"]["messages"], "tools": [WEATHER_TOOL]})
    assert check_grammar(frames)["delta"]["stop_reason"] == "tool_use"
    starts = [d["content_block"] for n, d in frames if n == "content_block_start"]
    assert [(s["type"], s["name"], s["input"]) for s in starts] == [("tool_use", "get_weather", {})] * 2
    for index, city in enumerate(["Paris", "Rome"]):
        pieces = [d["delta"] for n, d in frames if n == "content_block_delta" and d["index"] == index]
        assert {p["type"] for p in pieces} == {"input_json_delta"}
        assert json.loads("".join(p["partial_json"] for p in pieces)) == {"city": city}


def test_malformed_tool_arguments_never_reach_the_client_as_broken_json(claude):
    for stream in (False, True):
        m = ask(claude, "malformed", stream)
        calls = [b for b in m.content if b.type == "tool_use"]
        assert all(isinstance(c.input, dict) for c in calls)


@pytest.mark.parametrize("choice", [{"type": "tool", "name": "get_weather"},
                                    {"type": "any", "disable_parallel_tool_use": True}])
def test_forced_tool_choice(claude, choice):
    m = ask(claude, "text_then_call", tool_choice=choice)
    kinds = blocks(m)
    assert [k[:2] for k in kinds] == [("tool_use", "get_weather")] and m.stop_reason == "tool_use"
    assert isinstance(kinds[0][2].get("city"), str)


def test_tool_choice_none_answers_in_text(claude):
    m = ask(claude, "plain", tools=[WEATHER_TOOL], tool_choice={"type": "none"})
    assert blocks(m) == [("text", BY_NAME["plain"]["reply"])]


def test_tool_round_trip(claude):
    first = ask(claude, "text_then_call")
    call = next(b for b in first.content if b.type == "tool_use")
    history = BY_NAME["text_then_call"]["messages"] + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "Sunny, 21 C"}]},
            {"type": "text", "text": "And tomorrow?"}]},
    ]
    for stream in (False, True):
        m = ask(claude, "plain", stream, messages=history, tools=[WEATHER_TOOL], max_tokens=10)
        count = claude.messages.count_tokens(model="claude-x", messages=history, tools=[WEATHER_TOOL])
        assert m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0) == count.input_tokens
        assert m.stop_reason in ("end_turn", "max_tokens", "tool_use")


# -- thinking ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_blocks(claude, stream):
    m = ask(claude, "think", stream, thinking={"type": "enabled", "budget_tokens": 1024})
    assert blocks(m) == [("thinking", "Two plus three is five."), ("text", "2 + 3 = 5.")]
    assert m.stop_reason == "end_turn"


def test_thinking_round_trip_with_and_without_signature(claude):
    first = ask(claude, "think")
    replay = [b.model_dump(exclude_none=True) for b in first.content]
    unsigned = [{"type": "thinking", "thinking": "Two plus three is five."}, {"type": "text", "text": "5"}]
    redacted = [{"type": "redacted_thinking", "data": "opaque"}, {"type": "text", "text": "5"}]
    for content in (replay, unsigned, redacted):
        history = BY_NAME["think"]["messages"] + [{"role": "assistant", "content": content},
                                                  {"role": "user", "content": "Thanks!"}]
        m = claude.messages.create(model="claude-x", max_tokens=5, messages=history)
        assert m.stop_reason in ("end_turn", "max_tokens")


def test_thinking_config_switches_the_template(claude):
    def count(kind):
        return claude.messages.count_tokens(model="claude-x", messages=BY_NAME["plain"]["messages"],
                                            thinking={"type": kind}).input_tokens

    assert count("disabled") > count("enabled")  # the template writes an empty <think></think> when off


# -- failures and errors -----------------------------------------------------------------------


def test_mid_stream_failure_is_an_error_event(claude, scripted):
    body = {"model": "claude-x", "max_tokens": 60, "system": "EXPLODE", "messages": BY_NAME["think"]["messages"]}
    with httpx.stream("POST", scripted.url + "/v1/messages", json={**body, "stream": True}, timeout=60) as r:
        text = r.read().decode()
    assert text.startswith("event: message_start") and "event: message_stop" not in text
    last = text.strip().split("\n\n")[-1].split("\n")
    assert last[0] == "event: error"
    err = json.loads(last[1][6:])
    assert err["type"] == "error" and err["error"]["type"] == "api_error"
    assert "injected parser failure" in err["error"]["message"]
    with pytest.raises(anthropic.APIStatusError, match="injected parser failure"):
        with claude.messages.stream(**body) as s:
            s.get_final_message()


def assert_anthropic_error(resp, status, kind):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind and body["error"]["message"]
    assert body["request_id"].startswith("req_") and resp.headers["request-id"] == body["request_id"]
    return body["error"]["message"]


@pytest.mark.parametrize("body,status,kind,needle", [
    ({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}, 400, "invalid_request_error",
     "max_tokens"),
    ({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, 404, "not_found_error",
     "gpt-4o"),
    ({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]},
     400, "invalid_request_error", "vision"),
    ({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "hologram"}]}]},
     400, "invalid_request_error", "hologram"),
    ({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, 400, "invalid_request_error", "web_search"),
    ({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
      "tool_choice": {"type": "any"}}, 400, "invalid_request_error", "needs tools"),
    ({"model": "claude-x", "max_tokens": 5, "messages": []}, 400, "invalid_request_error", "messages"),
    ({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "robot", "content": "hi"}]}, 400,
     "invalid_request_error", "robot"),
])
def test_errors_in_anthropic_shape(scripted, body, status, kind, needle):
    resp = httpx.post(scripted.url + "/v1/messages", json=body, timeout=30)
    assert needle in assert_anthropic_error(resp, status, kind)


def test_bad_json_and_wrong_method_are_anthropic_errors(scripted):
    bad = httpx.post(scripted.url + "/v1/messages", content=b"{nope", headers={"Content-Type": "application/json"})
    assert_anthropic_error(bad, 400, "invalid_request_error")
    assert_anthropic_error(httpx.get(scripted.url + "/v1/messages"), 405, "invalid_request_error")


def test_prompt_too_long_uses_anthropics_wording(server):
    c = anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as info:
        c.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "go " * 600}])
    assert info.value.body["error"]["type"] == "invalid_request_error"
    match = re.fullmatch(r"prompt is too long: (\d+) tokens > (\d+) maximum", info.value.body["error"]["message"])
    assert match and int(match[1]) > int(match[2]) and int(match[2]) == 511
    count = c.messages.count_tokens(model="claude-x", messages=[{"role": "user", "content": "go " * 600}])
    assert count.input_tokens == int(match[1])


def test_unknown_fields_and_headers_are_ignored(scripted):
    body = {"model": "claude-x", "max_tokens": 40, "temperature": 0, "metadata": {"user_id": "u1"},
            "context_management": {"edits": []}, "service_tier": "auto", "container": None,
            "system": [{"type": "text", "text": "", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello!",
                                                       "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}],
            "tools": [{**WEATHER_TOOL, "cache_control": {"type": "ephemeral"}, "strict": True,
                       "defer_loading": False}]}
    headers = {"anthropic-beta": "fine-grained-tool-streaming-2025-05-14,made-up-beta", "anthropic-version": "1999-01-01",
               "X-Claude-Code-Session-Id": "abc"}
    r = httpx.post(scripted.url + "/v1/messages?beta=true", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "message"


def test_beta_client_and_role_system_messages(claude):
    m = claude.beta.messages.create(model="claude-x", max_tokens=40, messages=BY_NAME["plain"]["messages"],
                                    extra_body={"temperature": 0})
    assert m.content[0].text == BY_NAME["plain"]["reply"]
    with_system = [{"role": "system", "content": "Be brief."}] + BY_NAME["plain"]["messages"]
    a = claude.messages.count_tokens(model="claude-x", messages=with_system)
    b = claude.messages.count_tokens(model="claude-x", system="Be brief.", messages=BY_NAME["plain"]["messages"])
    assert a.input_tokens == b.input_tokens > claude.messages.count_tokens(
        model="claude-x", messages=BY_NAME["plain"]["messages"]).input_tokens


# -- auth, models, aliases ----------------------------------------------------------------------


def test_auth_by_x_api_key_and_by_bearer(server):
    by_key = anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)
    by_token = anthropic.Anthropic(base_url=server.url, auth_token=API_KEY, max_retries=0)
    for c in (by_key, by_token):
        assert c.messages.create(model="claude-x", max_tokens=2, messages=[{"role": "user", "content": "hi"}]).usage
    wrong = anthropic.Anthropic(base_url=server.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        wrong.messages.create(model="claude-x", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["error"]["type"] == "authentication_error"
    assert httpx.get(server.url + "/v1/models", headers={"x-api-key": API_KEY}).status_code == 200


def test_models_list_serves_both_sdks(scripted):
    from openai import OpenAI

    ids = [m.id for m in anthropic.Anthropic(base_url=scripted.url, api_key="x").models.list(limit=1000).data]
    assert ids == ["scripted", "claude-exact-1"]  # plain aliases are listed: Claude Code discovers claude-* ids
    assert [m.id for m in OpenAI(base_url=scripted.url + "/v1", api_key="x").models.list().data] == ids
    body = httpx.get(scripted.url + "/v1/models").json()
    assert (body["has_more"], body["first_id"], body["last_id"]) == (False, "scripted", "claude-exact-1")
    for card in body["data"]:
        assert card["type"] == "model" and card["display_name"] and card["created_at"].endswith("Z")
        assert card["object"] == "model" and isinstance(card["created"], int)
    sdk = anthropic.Anthropic(base_url=scripted.url, api_key="x", max_retries=0)
    assert sdk.models.retrieve("claude-haiku-4-5").id == "scripted"
    with pytest.raises(anthropic.NotFoundError) as info:  # the anthropic SDK gets its own error shape
        sdk.models.retrieve("gpt-4o")
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "not_found_error"
    openai_shape = httpx.get(scripted.url + "/v1/models/gpt-4o").json()  # no anthropic-version: OpenAI's shape
    assert set(openai_shape["error"]) == {"message", "type", "param", "code"}


def test_model_alias_globs(claude, scripted):
    for name in ("claude-opus-4-1-20250805", "claude-3-5-haiku-latest", "claude-exact-1", "scripted", "default"):
        assert claude.messages.count_tokens(model=name, messages=BY_NAME["plain"]["messages"]).input_tokens > 0
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="gpt-4o", messages=BY_NAME["plain"]["messages"])
    assert httpx.post(scripted.url + "/v1/chat/completions", json={
        "model": "claude-haiku-4-5", "max_tokens": 2, "messages": BY_NAME["plain"]["messages"]}).status_code == 200


def test_bad_model_alias_flag_stops_the_server(random_model_dir, tmp_path_factory):
    from server_process import ServerProcess

    srv = ServerProcess([str(random_model_dir), "--model-alias", "claude-*=some-other-model"],
                        log_path=tmp_path_factory.mktemp("logs") / "bad-alias.log")
    assert srv.proc.wait(120) == 2
    assert "is not the served model" in srv.log()
    srv.stop()


# -- prefix cache ---------------------------------------------------------------------------------


def test_billing_header_does_not_defeat_the_prefix_cache(server):
    """Claude Code's first system line changes on every request; the rest of the prompt is reused."""
    c = anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)
    long_system = "You are a careful assistant for a test suite. " * 12

    def ask_with(header):
        system = [{"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.1.{header}; cch={header}abc;"},
                  {"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}]
        m = c.messages.create(model="claude-x", max_tokens=2, system=system,
                              messages=[{"role": "user", "content": "hi"}])
        count = c.messages.count_tokens(model="claude-x", system=system, messages=[{"role": "user", "content": "hi"}])
        assert m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0) == count.input_tokens
        return m.usage

    ask_with(1)
    second = ask_with(2)
    assert second.cache_read_input_tokens >= 64 and second.cache_creation_input_tokens == 0


def test_base_url_probes_answer_200(scripted):
    assert httpx.head(scripted.url + "/").status_code == 200  # Claude Code probes HEAD / at start
    assert httpx.get(scripted.url + "/").json()["model"] == "scripted"


def test_client_gone_during_prefill_frees_the_sequence(scripted):
    """Closing a stream while it is still pinging (before its first token) aborts the request."""
    body = {"model": "claude-x", "max_tokens": 500, "ignore_eos": True, "stream": True, "system": "filler " * 600,
            "messages": [{"role": "user", "content": "Hello!"}]}
    aborted = aborts(scripted)
    with httpx.stream("POST", scripted.url + "/v1/messages", json=body, timeout=60) as r:
        lines = r.iter_lines()
        assert next(lines) == "event: message_start"
    deadline = time.monotonic() + 30
    while True:
        health = httpx.get(scripted.url + "/health").json()
        idle = health["engine"]["running"] == 0 and health["engine"]["waiting"] == 0 \
            and health["kv_cache"]["blocks_working"] == 0
        if idle or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert idle, health
    assert aborts(scripted) == aborted + 1


def aborts(srv) -> float:
    for line in httpx.get(srv.url + "/metrics").text.splitlines():
        if line.startswith("vllm:request_success_total{") and 'finished_reason="abort"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0
