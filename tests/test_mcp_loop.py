"""The server-side MCP tool loop through the real server and the openai client: a model that
really calls MCP tools (mcp_model.py), streamed and not, over stdio and streamable HTTP;
the iteration cap, invalid arguments, client function tools mixed in, bad requests."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from mcp_model import LOOP_FILE, WEATHER
from mcp_stack import API_KEY
from stream_helpers import collect


@pytest.fixture(scope="module")
def client(mcp_stack):
    mcp_stack.wait_connected("files", "web")
    return openai.OpenAI(base_url=mcp_stack.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def mcp_tool(label, *tools):
    entry = {"type": "mcp", "server_label": label}
    if tools:
        entry["allowed_tools"] = list(tools)
    return entry


def ask(client, text, tools, stream=False, **extra):
    return client.chat.completions.create(model="default", messages=[{"role": "user", "content": text}],
                                          tools=tools, temperature=0, max_tokens=60, stream=stream,
                                          extra_body=extra or None)


def run(client, text, tools, stream, **extra):
    """(content, finish_reason, stop_reason, mcp_calls, client tool calls, streamed mcp_call events)."""
    r = ask(client, text, tools, stream, **extra)
    if not stream:
        choice = r.choices[0]
        msg = choice.message
        calls = [(c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls or []]
        assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
        return (msg.content, choice.finish_reason, (choice.model_extra or {}).get("stop_reason"),
                msg.model_extra["mcp_calls"], calls, None)
    chunks = list(r)
    events = [c.choices[0].delta.model_extra["mcp_call"] for c in chunks
              if c.choices and (c.choices[0].delta.model_extra or {}).get("mcp_call")]
    got = collect(chunks)
    stop_reason = next(((c.choices[0].model_extra or {}).get("stop_reason") for c in chunks
                        if c.choices and c.choices[0].finish_reason), None)
    finished = [e for e in events if e["status"] != "in_progress"]
    return (got.content, got.finish_reason, stop_reason, finished,
            [(c["name"], json.loads(c["arguments"])) for c in got.calls], events)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("label,path,answer", [("files", "notes.txt", "notes.txt says: Buy milk and bread."),
                                               ("web", "todo.txt", "todo.txt says: Call Alice at noon.")])
def test_the_server_runs_the_tool_loop(client, stream, label, path, answer):
    content, finish, _, calls, client_calls, events = run(
        client, f"What is in {path}?", [mcp_tool(label, "read_file")], stream)
    assert (content, finish, client_calls) == (answer, "stop", [])
    [c] = calls
    assert (c["type"], c["server_label"], c["name"], c["function"], c["status"]) == \
        ("mcp_call", label, "read_file", f"{label}__read_file", "completed")
    assert json.loads(c["arguments"]) == {"path": path} and c["output"] == answer.split(": ", 1)[1]
    assert c["id"].startswith("call_") and c["duration_ms"] >= 0 and c["iteration"] == 1
    if stream:  # progress: the call as it starts, then as it ends, before the answer's text
        assert [e["status"] for e in events] == ["in_progress", "completed"]
        assert events[0]["id"] == events[1]["id"] and events[0]["output"] is None


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("asked", [None, 1, 5])  # the server caps at --mcp-max-tool-iterations 1
def test_the_iteration_cap_ends_the_loop(client, stream, asked):
    extra = {} if asked is None else {"max_tool_iterations": asked}
    content, finish, stop_reason, calls, _, _ = run(client, "Keep reading loop.txt.", [mcp_tool("files", "read_file")],
                                                    stream, **extra)
    assert (finish, stop_reason) == ("length", "max_tool_iterations")
    assert [(c["status"], json.loads(c["arguments"])["path"]) for c in calls] == \
        [("completed", LOOP_FILE), ("not_run", LOOP_FILE)]
    assert calls[0]["output"] == "Read loop.txt again." and "max_tool_iterations" in calls[1]["error"]


def test_loops_run_side_by_side_with_other_requests(mcp_stack, client):
    """Every model turn is an ordinary engine request: loops and plain requests batched together
    give the answers they give alone."""
    import asyncio

    jobs = [("What is in notes.txt?", [mcp_tool("files", "read_file")]),
            ("What is in todo.txt?", [mcp_tool("web", "read_file")]),
            ("Weather in Paris?", [mcp_tool("files", "read_file"), WEATHER])] * 3

    def summary(r):
        m = r.choices[0].message
        return (m.content, r.choices[0].finish_reason, [c["output"] for c in m.model_extra["mcp_calls"]],
                [(c.function.name, c.function.arguments) for c in m.tool_calls or []])

    solo = [summary(ask(client, text, tools)) for text, tools in jobs[:3]] * 3

    async def together():
        aclient = openai.AsyncOpenAI(base_url=mcp_stack.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
        return await asyncio.gather(*(aclient.chat.completions.create(
            model="default", messages=[{"role": "user", "content": text}], tools=tools, temperature=0,
            max_tokens=60) for text, tools in jobs))

    assert [summary(r) for r in asyncio.run(together())] == solo


def test_zero_iterations_runs_no_call(client):
    _, finish, stop_reason, calls, _, _ = run(client, "What is in notes.txt?", [mcp_tool("files", "read_file")],
                                              False, max_tool_iterations=0)
    assert (finish, stop_reason, [c["status"] for c in calls]) == ("length", "max_tool_iterations", ["not_run"])


@pytest.mark.parametrize("stream", [False, True])
def test_invalid_arguments_are_not_sent_and_the_model_is_told(client, stream):
    _, _, _, calls, _, _ = run(client, "Open the notes file.", [mcp_tool("files", "read_file")], stream)
    first = calls[0]
    assert first["status"] == "failed" and json.loads(first["arguments"]) == {"file": "notes.txt"}
    assert "'path' is a required property" in first["error"] and first["output"] is None


@pytest.mark.parametrize("stream", [False, True])
def test_client_function_tools_come_back_to_the_client(client, stream):
    content, finish, _, calls, client_calls, _ = run(client, "Weather in Paris?",
                                                     [mcp_tool("files", "read_file"), WEATHER], stream)
    assert (finish, client_calls, calls) == ("tool_calls", [("get_weather", {"city": "Paris"})], [])
    assert not content


def test_usage_counts_every_turn(client):
    tools = [mcp_tool("files", "read_file")]
    one_turn = ask(client, "What is in notes.txt?", tools, max_tool_iterations=0).usage
    two_turns = ask(client, "What is in notes.txt?", tools).usage
    assert two_turns.prompt_tokens > 2 * one_turn.prompt_tokens  # the second prompt holds the first
    assert two_turns.completion_tokens > one_turn.completion_tokens


@pytest.mark.parametrize("tools,words", [
    ([{"type": "mcp", "server_label": "nope"}], "not a configured MCP server"),
    ([{"type": "mcp", "server_label": "files", "server_url": "http://evil.example/mcp"}], "server_url"),
    ([{"type": "mcp"}], "server_label None"),
    ([mcp_tool("files", "read_file", "rm_rf")], "no usable tool named 'rm_rf'"),
    ([mcp_tool("limited", "crash")], "no usable tool named 'crash'"),
    ([{"type": "mcp", "server_label": "files", "require_approval": "always"}], "require_approval"),
    ([mcp_tool("files", "read_file"), {"type": "function", "function": {"name": "files__read_file"}}],
     "has the name of an MCP tool"),
])
def test_bad_mcp_tool_entries_get_400(client, tools, words):
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, "hi", tools)
    assert words in err.value.body["message"] and err.value.body["param"] == "tools"


@pytest.mark.parametrize("extra,param", [({"n": 2}, "n"), ({"tool_choice": "required"}, "tool_choice"),
                                         ({"max_tool_iterations": -1}, "max_tool_iterations"),
                                         ({"response_format": {"type": "json_object"}}, "response_format"),
                                         ({"max_tokens": 100000}, "max_tokens")])
def test_bad_loop_options_get_400(client, extra, param):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}],
                                       tools=[mcp_tool("files")], extra_body=extra)
    assert err.value.body["param"] == param


def test_a_server_that_is_down_gets_424(client):
    with pytest.raises(openai.APIStatusError) as err:
        ask(client, "hi", [mcp_tool("broken")])
    assert err.value.status_code == 424 and err.value.body["code"] == "mcp_server_unavailable"


def test_plain_chat_still_works_beside_mcp(client):
    r = ask(client, "Weather in Paris?", [WEATHER])  # no MCP entry: the ordinary route
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert "mcp_calls" not in (r.choices[0].message.model_extra or {})


def test_without_an_mcp_config_mcp_tools_are_a_400_and_the_routes_404(server):
    from conftest import API_KEY as KEY

    auth = {"Authorization": f"Bearer {KEY}"}
    resp = httpx.post(server.url + "/v1/chat/completions", headers=auth, timeout=60, json={
        "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "mcp", "server_label": "files"}]})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "mcp_not_configured"
    resp = httpx.get(server.url + "/v1/mcp/servers", headers=auth, timeout=60)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "mcp_not_configured"


def test_the_total_time_cap_ends_the_loop(mcp_model_dir, tmp_path):
    """With --mcp-total-timeout 2 and a read_file that takes 3 s, the call is cut at the cap and
    no further model turn runs."""
    import sys

    from mcp_model import TOOLBOX
    from server_process import ServerProcess

    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"files": {
        "command": sys.executable, "args": [str(TOOLBOX)], "env": {"TOOLBOX_DELAY": "3"}}}}))
    srv = ServerProcess([str(mcp_model_dir), "--tool-call-parser", "hermes", "--mcp-config", str(config),
                         "--mcp-total-timeout", "2"], log_path=tmp_path / "log").wait_ready()
    try:
        slow = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=60)
        content, finish, stop_reason, calls, _, _ = run(slow, "What is in notes.txt?",
                                                        [mcp_tool("files", "read_file")], False)
        assert (finish, stop_reason) == ("length", "mcp_total_timeout")
        assert [c["status"] for c in calls] == ["failed"] and "did not answer within" in calls[0]["error"]
        assert calls[0]["duration_ms"] < 2500
    finally:
        srv.stop()
