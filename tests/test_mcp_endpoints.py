"""The MCP host through the real server's HTTP API (/v1/mcp/*): real MCP servers over stdio
and streamable HTTP, and their faults: a server that cannot start, a tool that hangs, a
server that crashes mid-call, a tool whose definition changes, invalid arguments,
oversized results, policy, the children's environment and the audit log."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from mcp_stack import SECRET

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def call(stack, name, arguments=None, **extra):
    return stack.post("/v1/mcp/call", {"name": name, "arguments": arguments or {}, **extra})


def error_of(resp):
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_servers_connect_in_the_background_and_report_status(mcp_stack):
    status = mcp_stack.wait_connected("files", "web", "faulty", "limited")
    assert status["files"]["transport"] == "stdio" and status["web"]["transport"] == "http"
    assert status["files"]["tools"] == status["files"]["tools_listed"] > 5
    assert status["limited"]["tools"] == 2  # allowed_tools minus blocked_tools
    broken = status["broken"]
    assert broken["status"] in ("failed", "connecting") and broken["tools"] == 0
    deadline = time.monotonic() + 30
    while not broken["last_error"] and time.monotonic() < deadline:
        time.sleep(0.2)
        broken = mcp_stack.servers()["broken"]
    assert "nonexistent" in broken["last_error"]
    assert httpx.get(mcp_stack.url + "/health", timeout=10).status_code == 200  # it never blocked serving


def test_tools_are_namespaced_openai_function_tools(mcp_stack):
    mcp_stack.wait_connected("files", "web", "limited")
    tools = mcp_stack.get("/v1/mcp/tools").json()["data"]
    by_name = {t["function"]["name"]: t for t in tools}
    assert all(NAME.match(n) for n in by_name)
    read = by_name["files__read_file"]
    assert read["type"] == "function" and read["server_label"] == "files" and read["tool"] == "read_file"
    assert read["function"]["parameters"]["required"] == ["path"]
    assert read["function"]["description"] == "Read a text file."
    assert "web__read_file" in by_name
    assert {n for n in by_name if n.startswith("limited__")} == {"limited__read_file", "limited__echo"}
    assert not any(n.startswith("broken__") for n in by_name)


def test_mcp_routes_need_the_api_key(mcp_stack):
    for method, path in (("GET", "/v1/mcp/servers"), ("GET", "/v1/mcp/tools"), ("POST", "/v1/mcp/call")):
        resp = httpx.request(method, mcp_stack.url + path, json={"name": "files__read_file"}, timeout=10)
        assert resp.status_code == 401 and error_of(resp)["code"] == "invalid_api_key"


@pytest.mark.parametrize("server", ["files", "web"])
def test_call_over_stdio_and_streamable_http(mcp_stack, server):
    mcp_stack.wait_connected(server)
    resp = call(mcp_stack, f"{server}__read_file", {"path": "notes.txt"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["output"], body["is_error"], body["server_label"], body["tool"]) == \
        ("Buy milk and bread.", False, server, "read_file")
    assert body["content"] == [{"type": "text", "text": "Buy milk and bread."}]
    # arguments may come as a JSON string too, as a model writes them
    assert call(mcp_stack, f"{server}__read_file", '{"path": "todo.txt"}').json()["output"] == "Call Alice at noon."


def test_invalid_arguments_are_refused_before_any_call(mcp_stack):
    mcp_stack.wait_connected("files")
    for args, words in (({"file": "notes.txt"}, "'path' is a required property"),
                        ({"path": 3}, "is not of type 'string'"), ("{not json", "not valid JSON"),
                        ("[1, 2]", "must be a JSON object")):
        resp = call(mcp_stack, "files__read_file", args)
        assert resp.status_code == 400, resp.text
        err = error_of(resp)
        assert err["code"] == "invalid_arguments" and err["param"] == "arguments" and words in err["message"]


def test_bad_call_requests_get_clear_4xx(mcp_stack):
    resp = call(mcp_stack, "files__no_such_tool")
    assert resp.status_code == 404 and error_of(resp)["code"] == "tool_not_found"
    resp = mcp_stack.post("/v1/mcp/call", {"arguments": {}})
    assert resp.status_code == 400 and "name" in error_of(resp)["message"]
    resp = mcp_stack.post("/v1/mcp/call", {"name": "files__count", "argument": {}})
    assert resp.status_code == 400 and "argument" in error_of(resp)["message"]
    resp = call(mcp_stack, "files__count", timeout=0)
    assert resp.status_code == 400 and error_of(resp)["param"] == "timeout"


def test_server_that_cannot_start_fails_fast(mcp_stack):
    resp = call(mcp_stack, "broken__anything")
    assert resp.status_code == 404  # it lists no tools; the name cannot be resolved


def test_oversized_results_are_truncated(mcp_stack):
    mcp_stack.wait_connected("files")
    body = call(mcp_stack, "files__big", {"size": 3000}).json()  # 6000 bytes of UTF-8, limit 1000
    assert body["truncated"] is True
    kept, note = body["output"].rsplit("\n", 1)
    assert kept == "é" * 500 and note == "[truncated: 6000 bytes, limit 1000]"
    assert body["content"] == [{"type": "text", "text": body["output"]}]
    assert call(mcp_stack, "files__big", {"size": 10}).json()["truncated"] is False


def test_images_are_described_to_the_model_and_cut_when_large(mcp_stack):
    mcp_stack.wait_connected("files")
    small = call(mcp_stack, "files__picture", {"size": 20}).json()
    assert small["output"] == "[image image/png, 32 base64 characters]" and small["truncated"] is False
    assert [(b["type"], b["mimeType"]) for b in small["content"]] == [("image", "image/png")]
    large = call(mcp_stack, "files__picture", {"size": 6000}).json()  # 8000 base64 characters
    assert large["truncated"] is True and large["output"] == "[image image/png, 8008 base64 characters]"
    assert large["content"] == [{"type": "text", "text": large["output"]}]


def test_allowed_and_blocked_tools(mcp_stack):
    mcp_stack.wait_connected("limited")
    assert call(mcp_stack, "limited__echo", {"text": "hi"}).json()["output"] == "hi"
    for name in ("limited__crash", "limited__count"):  # blocked; not in allowed_tools
        resp = call(mcp_stack, name)
        assert resp.status_code == 403 and error_of(resp)["code"] == "tool_not_allowed"
    assert mcp_stack.servers()["limited"]["status"] == "connected"  # crash was never called


def test_stdio_children_get_only_the_configured_environment(mcp_stack):
    mcp_stack.wait_connected("files")
    assert call(mcp_stack, "files__greeting").json()["output"] == "hello"  # ${MCP_TEST_GREETING} expanded
    keys = set(call(mcp_stack, "files__env_keys").json()["output"].split())
    assert "TOOLBOX_GREETING" in keys and "SECRET_TOKEN" not in keys and "MCP_TEST_GREETING" not in keys
    # the SDK's minimal set, plus LC_CTYPE, which Python sets in the child itself (PEP 538)
    assert keys <= {"TOOLBOX_GREETING", "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LC_CTYPE"}


def test_a_hanging_tool_times_out_and_the_server_stays_usable(mcp_stack):
    mcp_stack.wait_connected("faulty")
    start = time.monotonic()
    resp = call(mcp_stack, "faulty__hang")
    assert resp.status_code == 504 and error_of(resp)["code"] == "mcp_timeout"
    assert 1.5 < time.monotonic() - start < 10  # the server's call_timeout is 2s
    resp = call(mcp_stack, "faulty__hang", timeout=0.5)  # a shorter timeout of the caller's
    assert resp.status_code == 504
    assert call(mcp_stack, "faulty__echo", {"text": "still here"}).json()["output"] == "still here"


def test_a_server_that_crashes_mid_call_is_reported_and_restarted(mcp_stack):
    attempts = mcp_stack.wait_connected("faulty")["faulty"]["attempts"]
    resp = call(mcp_stack, "faulty__crash")
    assert resp.status_code == 424 and error_of(resp)["code"] == "mcp_connection_lost"
    resp = call(mcp_stack, "faulty__echo", {"text": "too soon"})  # reconnecting waits a backoff of 1 s first
    assert resp.status_code == 424 and error_of(resp)["code"] in ("mcp_server_unavailable", "mcp_connection_lost")
    status = mcp_stack.wait_connected("faulty", timeout=60)["faulty"]
    assert status["attempts"] == attempts + 1
    assert call(mcp_stack, "faulty__echo", {"text": "back"}).json()["output"] == "back"


def test_a_tool_whose_definition_changes_is_disabled(mcp_stack):
    mcp_stack.wait_connected("faulty")
    assert call(mcp_stack, "faulty__flip").json()["output"] == "flipped"  # changes echo's description
    resp = call(mcp_stack, "faulty__echo", {"text": "x"})
    assert resp.status_code == 403 and error_of(resp)["code"] == "tool_disabled"
    assert "changed" in error_of(resp)["message"]
    status = mcp_stack.servers()["faulty"]
    assert [d["name"] for d in status["disabled_tools"]] == ["echo"]
    names = {t["function"]["name"] for t in mcp_stack.get("/v1/mcp/tools").json()["data"]}
    assert "faulty__echo" not in names and "faulty__count" in names
    assert "files__echo" in names  # another server's echo is untouched


def test_audit_log_has_a_line_per_call_and_no_arguments(mcp_stack):
    mcp_stack.wait_connected("files", "limited")
    assert call(mcp_stack, "limited__crash", {"why": SECRET}).status_code == 403
    assert call(mcp_stack, "files__read_file", {"path": 1, "token": SECRET}).status_code == 400
    assert call(mcp_stack, "files__echo", {"text": SECRET}).json()["output"] == SECRET
    text = mcp_stack.audit_log.read_text()
    assert SECRET not in text
    lines = [json.loads(line) for line in text.splitlines()]
    last = lines[-1]
    assert (last["event"], last["server"], last["tool"], last["outcome"]) == ("mcp_call", "files", "echo", "ok")
    assert last["args_bytes"] == len(json.dumps({"text": SECRET})) and last["result_bytes"] == len(SECRET)
    assert last["duration_ms"] >= 0
    assert [(x["server"], x["tool"], x["outcome"]) for x in lines[-3:-1]] == \
        [("limited", "crash", "not_allowed"), ("files", "read_file", "invalid_arguments")]
