"""Property tests against the live server: whatever the body, the answer is a 2xx
or a 4xx in OpenAI's error shape, never a 5xx or a hang."""

from __future__ import annotations

import json
import os

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
SETTINGS = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False),
                    st.text(max_size=40))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
    st.text(max_size=10), kids, max_size=4), max_leaves=12)

roles = st.sampled_from(["user", "system", "assistant", "tool", "developer", "wizard", "", 5])
content = st.one_of(st.text(max_size=200), st.none(), st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=50)}),
    st.fixed_dictionaries({"type": st.sampled_from(["image_url", "input_audio", "bogus"])}),
    json_values), max_size=3), json_values)
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": content}), max_size=4) | json_values

chat_bodies = st.fixed_dictionaries(
    {"messages": messages},
    optional={
        "max_tokens": st.one_of(st.integers(-5, 8), json_values),
        "temperature": st.one_of(st.floats(-2, 3, allow_nan=False), json_values),
        "top_p": st.floats(-1, 2, allow_nan=False),
        "top_k": st.integers(-3, 10**7),
        "n": st.integers(-1, 3),
        "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=20), json_values),
        "seed": st.integers(-2**70, 2**70),
        "logprobs": st.booleans(),
        "top_logprobs": st.integers(-2, 30),
        "logit_bias": st.dictionaries(st.text(max_size=8), st.floats(-200, 200, allow_nan=False), max_size=3),
        "stream": st.booleans(),
        "tools": json_values,
        "tool_choice": json_values,
        "model": st.sampled_from(["default", "random-llama", "nope", ""]),
        "chat_template_kwargs": json_values,
        "unknown_field": json_values,
        "cache_salt": st.one_of(st.text(max_size=10), json_values),
        "response_format": json_values,
    })

completion_bodies = st.fixed_dictionaries(
    {"prompt": st.one_of(st.text(max_size=100), st.lists(st.integers(-5, 10**6), max_size=8),
                         st.lists(st.text(max_size=20), max_size=3), json_values)},
    optional={"max_tokens": st.integers(-2, 8), "echo": st.booleans(), "logprobs": st.integers(-2, 25),
              "stream": st.booleans(), "n": st.integers(0, 3), "suffix": st.text(max_size=3)})


def check(server, path, body):
    with httpx.Client(timeout=60) as http:
        resp = http.post(server.url + path, content=json.dumps(body), headers=AUTH)
        text = resp.text
    assert resp.status_code < 500, text
    if resp.status_code >= 400:
        err = json.loads(text)["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]
    elif body.get("stream") is True:
        assert text.rstrip().endswith("data: [DONE]") and '"error"' not in text


@SETTINGS
@given(body=chat_bodies)
def test_chat_never_5xx(server, body):
    if isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 8:
        body["max_tokens"] = 8
    check(server, "/v1/chat/completions", body)


@SETTINGS
@given(body=completion_bodies)
def test_completions_never_5xx(server, body):
    check(server, "/v1/completions", body)


@SETTINGS
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_5xx(server, raw):
    resp = httpx.post(server.url + "/v1/chat/completions", content=raw, headers=AUTH, timeout=30)
    assert resp.status_code < 500, resp.text


def check_text(server, path: str, text: str) -> None:
    resp = httpx.post(server.url + path, content=text.encode(), headers=AUTH, timeout=120)
    assert resp.status_code < 500, resp.text[:500]
    if resp.status_code >= 400:
        err = resp.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]


def test_deep_nesting_huge_and_empty_strings_never_5xx(server):
    depth = 5000  # written as text: Python's json module cannot even encode this
    deep_list = "[" * depth + '"x"' + "]" * depth
    deep_obj = '{"a":' * depth + "{}" + "}" * depth
    user = '{"role": "user", "content": %s}'
    for text in [
        '{"messages": %s}' % deep_list,
        '{"messages": [%s]}' % (user % deep_list),
        '{"messages": [%s], "tools": [%s]}' % (user % '"hi"', deep_obj),
        '{"messages": [%s], "unknown": %s}' % (user % '"hi"', deep_obj),
        '{"prompt": %s}' % deep_list,
    ]:
        check_text(server, "/v1/chat/completions" if "messages" in text else "/v1/completions", text)
    huge = "lorem ipsum " * 100_000  # 1.2 MB of text: far beyond the 512-token context
    for body in [
        {"messages": [{"role": "user", "content": huge}]},
        {"messages": [{"role": "user", "content": ""}], "max_tokens": 2},
        {"messages": [{"role": "user", "content": "\u0000\ud7ff\ue000\U0010ffff 日本語 🎉" * 50}], "max_tokens": 2},
        {"messages": [{"role": "user", "content": "hi"}], "stop": [""], "max_tokens": 2},
    ]:
        check(server, "/v1/chat/completions", body)
    check(server, "/v1/completions", {"prompt": huge})


# -- Anthropic Messages: 2xx, or a 4xx in Anthropic's error shape ----------------------------------

anthropic_blocks = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=50)},
                          optional={"cache_control": json_values}),
    st.fixed_dictionaries({"type": st.just("image"), "source": json_values}),
    st.fixed_dictionaries({"type": st.just("document"), "source": st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "data": st.text(max_size=30)}), json_values)}),
    st.fixed_dictionaries({"type": st.just("tool_use"), "id": st.text(max_size=8), "name": st.text(max_size=8),
                           "input": json_values}),
    st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": st.text(max_size=8)},
                          optional={"content": st.one_of(st.text(max_size=30), st.lists(json_values, max_size=2)),
                                    "is_error": json_values}),
    st.fixed_dictionaries({"type": st.just("thinking"), "thinking": st.text(max_size=30)},
                          optional={"signature": json_values}),
    st.fixed_dictionaries({"type": st.sampled_from(["redacted_thinking", "server_tool_use", "bogus"])}),
    json_values)
anthropic_messages = st.lists(st.fixed_dictionaries({
    "role": st.sampled_from(["user", "assistant", "system", "tool", "", 5]),
    "content": st.one_of(st.text(max_size=100), st.lists(anthropic_blocks, max_size=3), json_values)}),
    max_size=4) | json_values
anthropic_tools = st.lists(st.fixed_dictionaries({"name": st.text(max_size=8)}, optional={
    "input_schema": json_values, "type": st.sampled_from(["custom", "bash_20250124", "web_search_20250305"]),
    "description": json_values}), max_size=2) | json_values

messages_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["claude-x", "default", "nope", ""]), "messages": anthropic_messages},
    optional={
        "max_tokens": st.one_of(st.integers(-5, 8), json_values),
        "system": st.one_of(st.text(max_size=50), st.lists(anthropic_blocks, max_size=2), json_values),
        "stream": st.booleans(),
        "stop_sequences": st.one_of(st.lists(st.text(max_size=5), max_size=20), json_values),
        "temperature": st.one_of(st.floats(-2, 3, allow_nan=False), json_values),
        "top_k": st.integers(-3, 10**7),
        "tools": anthropic_tools,
        "tool_choice": st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "tool", "none", "x"])},
                                                       optional={"name": st.text(max_size=8)}), json_values),
        "thinking": st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["enabled", "disabled", "x"])},
                                                    optional={"budget_tokens": json_values}), json_values),
        "output_config": json_values,
        "metadata": json_values,
    })


def check_anthropic(server, path, body):
    with httpx.Client(timeout=60) as http:
        resp = http.post(server.url + path, content=json.dumps(body), headers=AUTH)
        text = resp.text
    assert resp.status_code < 500, text
    if resp.status_code >= 400:
        err = json.loads(text)
        assert err["type"] == "error" and set(err["error"]) == {"type", "message"} and err["error"]["message"]
    elif body.get("stream") is True and path == "/v1/messages":
        assert text.rstrip().split("\n\n")[-1].startswith("event: message_stop") and "event: error" not in text


@SETTINGS
@given(body=messages_bodies)
def test_messages_never_5xx(server, body):
    if isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 8:
        body["max_tokens"] = 8
    check_anthropic(server, "/v1/messages", body)
    check_anthropic(server, "/v1/messages/count_tokens", body)


def test_messages_deep_nesting_is_an_anthropic_400(server):
    deep = '{"a":' * 5000 + "{}" + "}" * 5000
    for text in ['{"model": "claude-x", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}], '
                 '"tools": [{"name": "f", "input_schema": %s}]}' % deep,
                 '{"model": "claude-x", "max_tokens": 2, "messages": [{"role": "assistant", "content": [{"type": '
                 '"tool_use", "id": "t", "name": "f", "input": %s}]}]}' % deep]:
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            resp = httpx.post(server.url + path, content=text.encode(), headers=AUTH, timeout=60)
            assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error", resp.text


response_parts = st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text"]), "text": st.text(max_size=40)}),
    st.fixed_dictionaries({"type": st.sampled_from(["input_image", "refusal", "bogus"])}), json_values), max_size=3)
response_items = st.lists(st.one_of(
    st.fixed_dictionaries({"role": roles, "content": st.one_of(st.text(max_size=60), response_parts)},
                          optional={"type": st.sampled_from(["message", "bogus"])}),
    st.fixed_dictionaries({"type": st.just("function_call"), "call_id": st.text(max_size=6),
                           "name": st.text(max_size=6), "arguments": st.one_of(st.text(max_size=20), json_values)}),
    st.fixed_dictionaries({"type": st.just("function_call_output"), "call_id": st.text(max_size=6),
                           "output": st.one_of(st.text(max_size=20), response_parts)}),
    st.fixed_dictionaries({"type": st.sampled_from(["reasoning", "item_reference"])},
                          optional={"summary": json_values, "content": json_values, "id": json_values}),
    st.fixed_dictionaries({"type": st.just("mcp_approval_response"),
                           "approval_request_id": st.one_of(st.text(max_size=8), json_values),
                           "approve": st.one_of(st.booleans(), json_values)}, optional={"reason": json_values}),
    st.fixed_dictionaries({"type": st.sampled_from(["mcp_call", "mcp_approval_request", "mcp_list_tools"]),
                           "id": st.text(max_size=8), "server_label": st.sampled_from(["files", "web", "x", ""]),
                           "name": st.sampled_from(["read_file", "echo", ""]),
                           "arguments": st.one_of(st.just('{"path": "notes.txt"}'), st.text(max_size=20))},
                          optional={"output": json_values, "error": json_values, "tools": json_values,
                                    "approval_request_id": json_values, "status": json_values}),
    json_values), max_size=4) | json_values

mcp_filter = st.one_of(st.fixed_dictionaries({}, optional={
    "tool_names": st.one_of(st.lists(st.sampled_from(["read_file", "echo", "count", "nope"]), max_size=2),
                            json_values),
    "read_only": st.one_of(st.booleans(), json_values)}), json_values)
mcp_tools = st.fixed_dictionaries(
    {"type": st.just("mcp"), "server_label": st.one_of(st.sampled_from(["files", "web", "nope", "broken", ""]),
                                                       json_values)},
    optional={
        "allowed_tools": st.one_of(st.lists(st.sampled_from(["read_file", "echo", "count", "nope"]), max_size=3),
                                   mcp_filter),
        "require_approval": st.one_of(st.sampled_from(["always", "never", "sometimes"]),
                                      st.fixed_dictionaries({}, optional={"always": mcp_filter, "never": mcp_filter}),
                                      json_values),
        "server_url": st.one_of(st.sampled_from(["http://127.0.0.1:1/mcp", "http://evil.example/mcp", "file:///x",
                                                 "not a url"]), json_values),
        "headers": json_values, "authorization": json_values, "connector_id": json_values,
        "server_description": json_values,
    })

responses_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["default", "random-llama", "nope", ""]),
     "input": st.one_of(st.text(max_size=100), response_items)},
    optional={
        "max_output_tokens": st.one_of(st.integers(-5, 8), json_values),
        "instructions": st.one_of(st.text(max_size=30), json_values),
        "temperature": st.one_of(st.floats(-2, 3, allow_nan=False), json_values),
        "stream": st.booleans(),
        "store": st.one_of(st.booleans(), json_values),
        "previous_response_id": st.one_of(st.text(max_size=10), json_values),
        "tools": st.one_of(st.lists(st.one_of(st.fixed_dictionaries(
            {"type": st.sampled_from(["function", "mcp", "x"])},
            optional={"name": json_values, "parameters": json_values}), mcp_tools), max_size=2), json_values),
        "max_tool_calls": st.one_of(st.integers(-2, 3), json_values),
        "tool_choice": json_values,
        "text": st.one_of(st.fixed_dictionaries({"format": st.one_of(st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "json_object", "json_schema", "x"])},
            optional={"schema": json_values}), json_values)}), json_values),
        "reasoning": json_values,
        "metadata": json_values,
    })


@SETTINGS
@given(body=responses_bodies)
def test_responses_never_5xx(server, body):
    check_responses(server.url, AUTH, body)


@SETTINGS
@given(body=responses_bodies, mcp=st.lists(mcp_tools, min_size=1, max_size=2))
def test_responses_with_mcp_tools_never_5xx(mcp_stack, body, mcp):
    """Against the MCP stack: the MCP fields and items reach the MCP host (configured servers, one
    that is down, server_url refusals, approvals with unknown ids) and still never a 5xx."""
    from mcp_stack import API_KEY as MCP_KEY

    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    body["tools"] = tools + mcp
    body["model"] = "default"
    check_responses(mcp_stack.url, {**AUTH, "Authorization": f"Bearer {MCP_KEY}"}, body)


def check_responses(url, headers, body):
    if isinstance(body.get("max_output_tokens"), int) and body["max_output_tokens"] > 8:
        body["max_output_tokens"] = 8
    with httpx.Client(timeout=60) as http:
        resp = http.post(url + "/v1/responses", content=json.dumps(body), headers=headers)
        text = resp.text
    assert resp.status_code < 500, text
    if resp.status_code >= 400:
        err = json.loads(text)["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]
    elif body.get("stream") is True:
        last = text.rstrip().split("\n\n")[-1]
        assert last.startswith(("event: response.completed", "event: response.incomplete")), last
