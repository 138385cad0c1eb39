"""MCP tools inside the Responses API, through the real server and the official openai SDK: the
server lists the tools (mcp_list_tools), runs the calls (mcp_call) and keeps generating in the same
response; approvals (mcp_approval_request, then mcp_approval_response with previous_response_id);
max_tool_calls and the iteration cap; a request's own server_url only on --mcp-allowed-urls hosts.
Streams are checked event by event against the final response."""

from __future__ import annotations

import json

import openai
import pytest

from mcp_model import WEATHER
from mcp_stack import API_KEY

READ = {"type": "mcp", "server_label": "files", "allowed_tools": ["read_file"], "require_approval": "never"}
FLAT_WEATHER = {"type": "function", "name": "get_weather", "description": WEATHER["function"]["description"],
                "parameters": WEATHER["function"]["parameters"]}


@pytest.fixture(scope="module")
def client(mcp_stack):
    mcp_stack.wait_connected("files", "web")
    return openai.OpenAI(base_url=mcp_stack.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def check_events(events, final):
    """The stream's grammar: numbering, lifecycle, one item open at a time, each item's own events
    in order with its id, and the items as the final response holds them."""
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert all(e.response.id == final.id for e in events if hasattr(e, "response"))
    items, i = [], 2
    while i < len(events) - 1:
        added = events[i]
        assert added.type == "response.output_item.added" and added.output_index == len(items)
        item, index = added.item, added.output_index
        j = i + 1
        while events[j].type != "response.output_item.done":
            assert events[j].output_index == index, events[j]
            assert getattr(events[j], "item_id", item.id) == item.id
            j += 1
        inner = [e.type for e in events[i + 1:j]]
        if item.type == "mcp_list_tools":
            assert inner == ["response.mcp_list_tools.in_progress", "response.mcp_list_tools.completed"]
            assert item.tools == []  # the listing arrives with output_item.done
        elif item.type == "mcp_call":
            ended = "response.mcp_call.failed" if events[j].item.error else "response.mcp_call.completed"
            deltas = ["response.mcp_call_arguments.delta"] if events[j].item.arguments else []
            assert inner == ["response.mcp_call.in_progress", *deltas, "response.mcp_call_arguments.done", ended]
            assert (item.status, item.arguments) == ("in_progress", "")
            assert "".join(e.delta for e in events[i + 1:j] if e.type.endswith("arguments.delta")) == \
                events[j].item.arguments == events[j - 2].arguments
        elif item.type == "mcp_approval_request":
            assert inner == []
        elif item.type == "message":
            assert inner[0] == "response.content_part.added" and inner[-2:] == [
                "response.output_text.done", "response.content_part.done"]
            assert set(inner[1:-2]) <= {"response.output_text.delta"}
        elif item.type == "function_call":
            assert inner[-1] == "response.function_call_arguments.done"
            assert set(inner[:-1]) <= {"response.function_call_arguments.delta"}
        else:
            raise AssertionError(f"unexpected item {item.type}")
        assert events[j].item.id == item.id and events[j].output_index == index
        items.append(events[j].item)
        i = j + 1
    assert [plain(x) for x in items] == [plain(x) for x in final.output]


def plain(item):
    d = item.model_dump(exclude_none=True)
    d.pop("parsed_arguments", None)
    for part in d.get("content") or []:
        part.pop("parsed", None)
    return d


def create(client, stream, **kw):
    args = dict(model="default", temperature=0, max_output_tokens=60, **kw)
    if not stream:
        return client.responses.create(**args)
    with client.responses.stream(**args) as s:
        events = list(s)
    final = events[-1].response if events[-1].type == "response.incomplete" else s.get_final_response()
    check_events(events, final)
    return final


def kinds(response):
    return [o.type for o in response.output]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("label,path,answer", [("files", "notes.txt", "notes.txt says: Buy milk and bread."),
                                               ("web", "todo.txt", "todo.txt says: Call Alice at noon.")])
def test_the_server_lists_calls_and_answers_in_one_response(client, stream, label, path, answer):
    r = create(client, stream, input=f"What is in {path}?", tools=[dict(READ, server_label=label)])
    assert (r.status, kinds(r), r.output_text) == ("completed", ["mcp_list_tools", "mcp_call", "message"], answer)
    listing, call, _ = r.output
    assert listing.server_label == label and [t.name for t in listing.tools] == ["read_file"]
    assert listing.tools[0].input_schema["properties"]["path"]["type"] == "string" and listing.error is None
    assert (call.server_label, call.name, json.loads(call.arguments)) == (label, "read_file", {"path": path})
    assert (call.output, call.error, call.status) == (answer.split(": ", 1)[1], None, "completed")
    assert call.id.startswith("mcp_") and listing.id.startswith("mcpl_")
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    stored = client.responses.retrieve(r.id)
    assert [plain(o) for o in stored.output] == [plain(o) for o in r.output]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("approval", ["always", None, {"always": {"tool_names": ["read_file"]}}])
def test_approval_requests_end_the_response_and_an_approval_continues_it(client, stream, approval):
    tools = [{"type": "mcp", "server_label": "files", "allowed_tools": ["read_file"]}]
    if approval is not None:  # None: OpenAI's default, approval for every call
        tools[0]["require_approval"] = approval
    first = create(client, stream, input="What is in notes.txt?", tools=tools)
    assert (first.status, kinds(first)) == ("completed", ["mcp_list_tools", "mcp_approval_request"])
    asked = first.output[1]
    assert (asked.server_label, asked.name, json.loads(asked.arguments)) == ("files", "read_file",
                                                                             {"path": "notes.txt"})
    assert asked.id.startswith("mcpr_")
    second = create(client, stream, previous_response_id=first.id, tools=tools, input=[
        {"type": "mcp_approval_response", "approval_request_id": asked.id, "approve": True}])
    # the tools were listed earlier in this conversation: not again
    assert (second.status, kinds(second)) == ("completed", ["mcp_call", "message"])
    call = second.output[0]
    assert (call.approval_request_id, call.output, call.status) == (asked.id, "Buy milk and bread.", "completed")
    assert second.output_text == "notes.txt says: Buy milk and bread."
    items = client.responses.input_items.list(second.id)
    assert [i.type for i in items.data] == ["mcp_approval_response"]


def test_an_approved_call_still_counts_against_max_tool_calls(client):
    tools = [{"type": "mcp", "server_label": "files", "allowed_tools": ["read_file"], "require_approval": "always"}]
    first = create(client, False, input="What is in notes.txt?", tools=tools)
    second = create(client, True, previous_response_id=first.id, tools=tools, max_tool_calls=0, input=[
        {"type": "mcp_approval_response", "approval_request_id": first.output[1].id, "approve": True}])
    assert (second.status, second.incomplete_details.reason, kinds(second)) == ("incomplete", "max_tool_calls",
                                                                                 ["mcp_call"])
    assert second.output[0].approval_request_id == first.output[1].id and second.output[0].status == "failed"
    assert second.usage.output_tokens == 0  # no model turn


def test_a_declined_call_is_not_run(client):
    tools = [{"type": "mcp", "server_label": "files", "allowed_tools": ["read_file"], "require_approval": "always"}]
    first = create(client, False, input="What is in notes.txt?", tools=tools)
    second = create(client, False, previous_response_id=first.id, tools=tools, input=[
        {"type": "mcp_approval_response", "approval_request_id": first.output[1].id, "approve": False,
         "reason": "no"}])
    assert second.status == "completed" and "mcp_call" not in kinds(second)


@pytest.mark.parametrize("stream", [False, True])
def test_a_never_filter_runs_without_approval(client, stream):
    tools = [{"type": "mcp", "server_label": "files", "allowed_tools": ["read_file"],
              "require_approval": {"never": {"tool_names": ["read_file"]}}}]
    r = create(client, stream, input="What is in notes.txt?", tools=tools)
    assert kinds(r) == ["mcp_list_tools", "mcp_call", "message"]


@pytest.mark.parametrize("stream", [False, True])
def test_max_tool_calls_stops_the_calls(client, stream):
    r = create(client, stream, input="What is in notes.txt?", tools=[READ], max_tool_calls=0)
    assert (r.status, r.incomplete_details.reason, kinds(r)) == ("incomplete", "max_tool_calls",
                                                                 ["mcp_list_tools", "mcp_call"])
    call = r.output[1]
    assert call.status == "failed" and call.output is None and "max_tool_calls" in call.error.message
    assert call.error.type == "mcp_protocol_error"


@pytest.mark.parametrize("stream", [False, True])
def test_the_iteration_cap_ends_the_loop(client, stream):  # the stack serves --mcp-max-tool-iterations 1
    r = create(client, stream, input="Keep reading loop.txt.", tools=[READ], max_tool_calls=5)
    assert (r.status, r.incomplete_details.reason) == ("incomplete", "max_tool_iterations")
    assert [(o.status, o.output) for o in r.output[1:]] == [("completed", "Read loop.txt again."), ("failed", None)]


@pytest.mark.parametrize("stream", [False, True])
def test_invalid_arguments_fail_the_call_and_the_model_is_told(client, stream):
    r = create(client, stream, input="Open the notes file.", tools=[READ], max_tool_calls=1)
    call = r.output[1]
    assert call.type == "mcp_call" and call.status == "failed" and json.loads(call.arguments) == {"file": "notes.txt"}
    assert call.error.type == "mcp_protocol_error" and call.error.code == -32602
    assert "'path' is a required property" in call.error.message


@pytest.mark.parametrize("stream", [False, True])
def test_client_function_calls_come_back_to_the_client(client, stream):
    r = create(client, stream, input="Weather in Paris?", tools=[READ, FLAT_WEATHER])
    assert (r.status, kinds(r)) == ("completed", ["mcp_list_tools", "function_call"])
    assert (r.output[1].name, json.loads(r.output[1].arguments)) == ("get_weather", {"city": "Paris"})


@pytest.mark.parametrize("tools,extra,words,code", [
    ([dict(READ, server_label="nope")], {}, "not a configured MCP server", None),
    ([dict(READ, server_url="http://evil.example/mcp", server_label="evil")], {}, "--mcp-allowed-urls",
     "mcp_server_url_not_allowed"),
    ([dict(READ, headers={"X": "y"})], {}, "applies to a server_url only", None),
    ([dict(READ, allowed_tools=["read_file", "rm_rf"])], {}, "no usable tool named 'rm_rf'", None),
    ([dict(READ, require_approval="sometimes")], {}, "require_approval", None),
    ([dict(READ, require_approval={"always": {"tool_names": 5}})], {}, "require_approval", None),
    ([dict(READ, allowed_tools={"tool_names": ["read_file"], "read_only": "yes"})], {}, "allowed_tools", None),
    ([dict(READ, connector_id="connector_gmail")], {}, "connectors", None),
    ([READ, {"type": "function", "name": "files__read_file"}], {}, "has the name of an MCP tool", None),
    ([READ], {"tool_choice": "required"}, "tool_choice", None),
    ([READ], {"max_tool_calls": -1}, "max_tool_calls", None),
    ([READ], {"input": [{"type": "mcp_approval_response", "approval_request_id": "mcpr_x", "approve": True}]},
     "no mcp_approval_request with this id", None),
])
def test_bad_requests_get_400(client, tools, extra, words, code):
    args = {"input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="default", tools=tools, **args)
    assert words in err.value.body["message"], err.value.body
    if code:
        assert err.value.body["code"] == code


def test_a_server_that_is_down_gets_424(client):
    with pytest.raises(openai.APIStatusError) as err:
        client.responses.create(model="default", input="hi", tools=[dict(READ, server_label="broken")])
    assert err.value.status_code == 424 and err.value.body["code"] == "mcp_server_unavailable"


@pytest.fixture(scope="module")
def url_server(mcp_model_dir, mcp_stack, tmp_path_factory):
    """A server with no MCP config that lets requests name MCP servers on 127.0.0.1."""
    from server_process import ServerProcess

    srv = ServerProcess([str(mcp_model_dir), "--tool-call-parser", "hermes", "--mcp-allowed-urls", "127.0.0.1"],
                        log_path=tmp_path_factory.mktemp("logs") / "url-server.log").wait_ready()
    yield srv
    srv.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_a_server_url_on_an_allowed_host_is_connected(url_server, mcp_stack, stream):
    toolbox_url = mcp_stack.servers()["web"]  # the stack's streamable-HTTP toolbox
    url = json.loads((mcp_stack.audit_log.parent / "mcp.json").read_text())["mcpServers"]["web"]["url"]
    assert toolbox_url["transport"] == "http"
    c = openai.OpenAI(base_url=url_server.url + "/v1", api_key="x", max_retries=0, timeout=120)
    tools = [{"type": "mcp", "server_label": "web", "server_url": url, "allowed_tools": ["read_file"],
              "require_approval": "never", "headers": {"X-Greeting": "hi"}, "authorization": "tok-secret"}]
    r = create(c, stream, input="What is in todo.txt?", tools=tools)
    assert (kinds(r), r.output_text) == (["mcp_list_tools", "mcp_call", "message"], "todo.txt says: Call Alice at noon.")
    # the response echoes the tools without their secrets (and stores them so)
    for echoed in (r.tools[0], c.responses.retrieve(r.id).tools[0]):
        assert echoed.server_url == url and echoed.authorization is None and echoed.headers == {"X-Greeting": "<redacted>"}
    with pytest.raises(openai.BadRequestError) as err:  # another host (even one naming the same machine)
        c.responses.create(model="default", input="hi", tools=[dict(tools[0], server_url=url.replace(
            "127.0.0.1", "localhost"))])
    assert err.value.body["code"] == "mcp_server_url_not_allowed"
    with pytest.raises(openai.BadRequestError) as err:  # no config: labels alone name nothing
        c.responses.create(model="default", input="hi", tools=[READ])
    assert "not a configured MCP server" in err.value.body["message"]


def test_url_allowed():
    from vllm_mlx.mcp_host.config import url_allowed

    allowed = ("127.0.0.1", "mcp.example.com:8443", "https://tools.example.org")
    assert url_allowed("http://127.0.0.1:9000/mcp", allowed)
    assert url_allowed("https://mcp.example.com:8443/x", allowed)
    assert not url_allowed("https://mcp.example.com/x", allowed)  # port 443, not 8443
    assert url_allowed("http://tools.example.org:1234/mcp", allowed)  # no port in the entry: any
    assert not url_allowed("http://127.0.0.2/mcp", allowed)
    assert not url_allowed("http://127.0.0.1.evil.com/mcp", allowed)
    assert not url_allowed("ftp://127.0.0.1/mcp", allowed)
    assert not url_allowed("http://user@evil.com/127.0.0.1", allowed)
    assert not url_allowed("http://127.0.0.1:99999999/", allowed)
    assert not url_allowed("http://127.0.0.1/", ())
