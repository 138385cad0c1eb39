"""OpenAI Responses through the real server and the official openai SDK: text, items, tools,
reasoning, structured output, the store (retrieve, delete, input items, previous_response_id
chains), the stream grammar event by event, and errors in OpenAI's shape."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pydantic
import pytest
from openai import OpenAI

from conftest import API_KEY
from scripted_model import BY_NAME

PLUGIN = str(Path(__file__).parent / "plugins" / "exploding_reasoning.py")
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city.",
           "parameters": BY_NAME["parallel"]["tools"][0]["function"]["parameters"]}


@pytest.fixture(scope="module")
def scripted(scripted_model_dir, tmp_path_factory):
    """The scripted model: hermes tool calls (detected from its template), qwen3 reasoning through
    a parser that fails mid-stream when the system prompt says EXPLODE."""
    from server_process import ServerProcess

    srv = ServerProcess([str(scripted_model_dir), "--served-model-name", "scripted", "--plugin", PLUGIN,
                         "--reasoning-parser", "qwen3_exploding"],
                        log_path=tmp_path_factory.mktemp("logs") / "responses.log").wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sc(scripted):
    return OpenAI(base_url=scripted.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def ask(client, name, stream=False, **kw):
    """The scripted model answering script ``name`` through Responses."""
    script = BY_NAME[name]
    if script.get("tools"):
        kw.setdefault("tools", [WEATHER])
    kw.setdefault("input", script["messages"][0]["content"])
    kw.setdefault("max_output_tokens", 120)
    args = dict(model="scripted", temperature=0, **kw)
    if stream:
        with client.responses.stream(**args) as s:
            events = list(s)
        final = final_of(s, events)
        check_events(events, final)
        return final
    return client.responses.create(**args)


def final_of(stream, events):
    """The final response: ``get_final_response()`` wants ``response.completed`` (SDK 3.57 raises on
    ``response.incomplete``, as it does against OpenAI): an incomplete one is the last event's."""
    if events[-1].type == "response.incomplete":
        return events[-1].response
    return stream.get_final_response()


def check_events(events, final):
    """The stream's grammar, event by event, against the final response."""
    assert events[0].type == "response.created" and events[1].type == "response.in_progress"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert all(e.response.id == final.id for e in events if e.type.startswith("response.") and hasattr(e, "response"))
    added, done, parts = {}, {}, set()
    open_index = None
    for e in events[2:-1]:
        if e.type == "response.output_item.added":
            assert open_index is None and e.output_index == len(added)
            added[e.output_index] = e.item
            open_index = e.output_index
        elif e.type == "response.output_item.done":
            assert e.output_index == open_index
            done[e.output_index] = e.item
            open_index = None
        elif e.type == "response.content_part.added":
            assert e.output_index == open_index
            parts.add(e.output_index)
        elif e.type in ("response.output_text.delta", "response.reasoning_text.delta"):
            assert e.output_index == open_index and e.output_index in parts
        elif e.type in ("response.output_text.done", "response.reasoning_text.done", "response.content_part.done",
                        "response.function_call_arguments.delta", "response.function_call_arguments.done"):
            assert e.output_index == open_index
        elif e.type not in ("response.output_text.delta",):
            raise AssertionError(f"unexpected event {e.type}")
    assert open_index is None and added.keys() == done.keys()
    assert [added[i].id for i in sorted(added)] == [done[i].id for i in sorted(done)] == [o.id for o in final.output]
    assert [plain(done[i]) for i in sorted(done)] == [plain(o) for o in final.output]


def plain(item):
    """An output item as sent (the SDK's parsed variants add ``parsed`` fields)."""
    d = item.model_dump(exclude_none=True)
    d.pop("parsed_arguments", None)
    for part in d.get("content") or []:
        part.pop("parsed", None)
    return d


def summary(response):
    out = []
    for item in response.output:
        if item.type == "message":
            assert item.role == "assistant" and item.id.startswith("msg_")
            out.append(("message", "".join(c.text for c in item.content)))
        elif item.type == "reasoning":
            assert item.id.startswith("rs_")
            out.append(("reasoning", "".join(c.text for c in item.content)))
        elif item.type == "function_call":
            assert item.id.startswith("fc_") and item.call_id
            out.append(("function_call", item.name, json.loads(item.arguments)))
    return out


# -- text (random model) -------------------------------------------------------------------------


def test_string_input_with_usage_and_incomplete_status(client):
    r = client.responses.create(model="random-llama", input="Hello there", max_output_tokens=6, temperature=0)
    assert r.object == "response" and r.id.startswith("resp_") and r.model == "random-llama"
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 6 and r.usage.input_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + 6
    assert r.usage.input_tokens_details.cached_tokens >= 0
    assert r.output[0].type == "message" and r.output_text == r.output[0].content[0].text
    chat = client.chat.completions.create(model="random-llama", messages=[{"role": "user", "content": "Hello there"}],
                                          max_tokens=6, temperature=0)
    assert r.output_text == chat.choices[0].message.content  # the same pipeline, the same prompt
    assert r.usage.input_tokens == chat.usage.prompt_tokens


def test_instructions_and_items_render_like_chat(client):
    items = [{"role": "developer", "content": "Be brief."},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
             {"role": "user", "content": "And now?"}]
    r = client.responses.create(model="random-llama", instructions="You are terse.", input=items,
                                max_output_tokens=4, temperature=0)
    chat = client.chat.completions.create(model="random-llama", max_tokens=4, temperature=0, messages=[
        {"role": "system", "content": "You are terse.\nBe brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "And now?"}])
    assert r.usage.input_tokens == chat.usage.prompt_tokens
    assert r.output_text == chat.choices[0].message.content


def test_stream_text_event_by_event(client):
    with client.responses.stream(model="random-llama", input="Hello there", max_output_tokens=6,
                                 temperature=0) as s:
        events = list(s)
        final = final_of(s, events)
    check_events(events, final)
    assert events[-1].type == "response.incomplete" and final.incomplete_details.reason == "max_output_tokens"
    assert final.status == "incomplete" and final.output[0].status == "incomplete"
    kinds = [e.type for e in events]
    assert kinds[2:5] == ["response.output_item.added", "response.content_part.added", "response.output_text.delta"]
    assert kinds[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == final.output_text == next(e.text for e in events if e.type == "response.output_text.done")
    assert final.usage.output_tokens == 6
    plain = client.responses.create(model="random-llama", input="Hello there", max_output_tokens=6, temperature=0)
    assert plain.output_text == final.output_text


def test_raw_stream_frames(server):
    """Each frame: an ``event:`` line naming data.type; sequence numbers from 0 without gaps."""
    with httpx.stream("POST", server.url + "/v1/responses", timeout=60,
                      headers={"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"},
                      json={"model": "random-llama", "input": "Hi", "max_output_tokens": 3, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in r.read().decode().split("\n\n") if f.strip()]
    seen = []
    for f in frames:
        event, data = f.split("\n")
        data = json.loads(data[6:])
        assert event == "event: " + data["type"]
        seen.append(data)
    assert [d["sequence_number"] for d in seen] == list(range(len(seen)))
    assert seen[0]["type"] == "response.created" and seen[0]["response"]["status"] == "in_progress"
    assert seen[0]["response"]["output"] == [] and seen[-1]["type"] == "response.incomplete"


def test_structured_output_through_text_format(client):
    class Answer(pydantic.BaseModel):
        ok: bool
        n: int

    r = client.responses.parse(model="random-llama", input="Answer as JSON.", text_format=Answer,
                               max_output_tokens=80, temperature=0)
    assert r.status == "completed" and isinstance(r.output_parsed, Answer)
    obj = client.responses.create(model="random-llama", input="JSON please", text={"format": {"type": "json_object"}},
                                  max_output_tokens=80, temperature=0)
    assert obj.status == "completed" and isinstance(json.loads(obj.output_text), dict)


# -- the store ------------------------------------------------------------------------------------


def test_retrieve_input_items_delete(client):
    r = client.responses.create(model="random-llama", input=[{"role": "user", "content": "one"},
                                                             {"role": "user", "content": "two"}],
                                max_output_tokens=3, metadata={"k": "v"})
    got = client.responses.retrieve(r.id)
    assert got.model_dump() == r.model_dump() and got.store is True and got.metadata == {"k": "v"}
    items = client.responses.input_items.list(r.id, order="asc")
    assert [i.content[0].text for i in items.data] == ["one", "two"]
    assert all(i.type == "message" and i.id for i in items.data)
    desc = client.responses.input_items.list(r.id, limit=1)
    assert [i.content[0].text for i in desc.data] == ["two"] and desc.has_more
    assert client.responses.delete(r.id) is None
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.retrieve(r.id)
    assert err.value.body["type"] == "invalid_request_error" or err.value.body["type"] == "not_found_error"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)


def test_store_false_is_not_kept(client):
    r = client.responses.create(model="random-llama", input="x", max_output_tokens=2, store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="random-llama", input="y", previous_response_id=r.id, max_output_tokens=2)
    assert err.value.body["param"] == "previous_response_id"


def test_previous_response_id_chains_inputs_and_outputs_not_instructions(client):
    first = client.responses.create(model="random-llama", instructions="Old rules.", input="first",
                                    max_output_tokens=4, temperature=0)
    second = client.responses.create(model="random-llama", previous_response_id=first.id, input="second",
                                     instructions="New rules.", max_output_tokens=4, temperature=0)
    explicit = client.responses.create(model="random-llama", instructions="New rules.", max_output_tokens=4,
                                       temperature=0, input=[
                                           {"role": "user", "content": "first"},
                                           {"role": "assistant", "content": first.output_text},
                                           {"role": "user", "content": "second"}])
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens == explicit.usage.input_tokens
    assert second.output_text == explicit.output_text
    assert [i.content[0].text for i in client.responses.input_items.list(second.id).data] == ["second"]


def test_streamed_response_is_stored(client):
    with client.responses.stream(model="random-llama", input="stored?", max_output_tokens=3) as s:
        final = final_of(s, list(s))
    assert client.responses.retrieve(final.id).output[0].id == final.output[0].id


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, param", [
    ({"input": 5}, "input"),
    ({"input": [{"type": "nonsense"}]}, "input"),
    ({"input": [{"type": "message", "role": "robot", "content": "x"}]}, "input"),
    ({"input": [{"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input"),
    ({"input": []}, "input"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools"),
    ({"input": "x", "tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"input": "x", "tool_choice": "required"}, "tool_choice"),
    ({"input": "x", "text": {"format": {"type": "yaml"}}}, "text"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "x", "background": True}, "background"),
])
def test_bad_requests_are_400_in_openai_shape(server, body, param):
    r = httpx.post(server.url + "/v1/responses", json={"model": "random-llama", **body}, timeout=30,
                   headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]


def test_unknown_model_and_ids_are_404(client):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="x")
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list("resp_missing")


# -- tools and reasoning (scripted model) -----------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_function_calls(sc, stream):
    r = ask(sc, "parallel", stream=stream)
    assert r.status == "completed"
    assert summary(r) == [("function_call", "get_weather", {"city": "Paris"}),
                          ("function_call", "get_weather", {"city": "Rome"})]
    assert len({o.call_id for o in r.output}) == 2
    assert r.tools[0].name == "get_weather"


@pytest.mark.parametrize("stream", [False, True])
def test_text_then_call(sc, stream):
    r = ask(sc, "text_then_call", stream=stream)
    kinds = summary(r)
    assert kinds[0][0] == "message" and "Let me check." in kinds[0][1]
    assert kinds[1] == ("function_call", "get_weather", {"city": "Oslo"})


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_item(sc, stream):
    r = ask(sc, "think", stream=stream)
    assert summary(r) == [("reasoning", "Two plus three is five."), ("message", "2 + 3 = 5.")]
    assert r.output_text == "2 + 3 = 5."
    assert 0 < r.usage.output_tokens_details.reasoning_tokens < r.usage.output_tokens


def test_forced_tool_choice(sc):
    r = ask(sc, "plain", tool_choice={"type": "function", "name": "get_weather"}, tools=[WEATHER])
    assert [o.type for o in r.output] == ["function_call"] and r.output[0].name == "get_weather"
    assert isinstance(json.loads(r.output[0].arguments), dict)
    none = ask(sc, "parallel", tool_choice="none")
    assert all(o.type == "message" for o in none.output)


def test_function_call_round_trip_through_the_store(sc):
    first = ask(sc, "parallel")
    outputs = [{"type": "function_call_output", "call_id": o.call_id, "output": f"sunny in {json.loads(o.arguments)['city']}"}
               for o in first.output]
    chained = ask(sc, "parallel", previous_response_id=first.id, input=outputs, max_output_tokens=5)
    explicit = ask(sc, "parallel", max_output_tokens=5, input=[
        {"role": "user", "content": BY_NAME["parallel"]["messages"][0]["content"]},
        *[{"type": "function_call", "call_id": o.call_id, "name": o.name, "arguments": o.arguments}
          for o in first.output], *outputs])
    assert chained.usage.input_tokens == explicit.usage.input_tokens
    assert chained.output_text == explicit.output_text
    listed = sc.responses.input_items.list(chained.id, order="asc").data
    assert [i.type for i in listed] == ["function_call_output"] * 2
    assert [i.call_id for i in listed] == [o.call_id for o in first.output]


def test_reasoning_items_as_input_are_never_visible(sc):
    r = ask(sc, "think")
    question = BY_NAME["think"]["messages"][0]["content"]
    with_reasoning = [{"role": "user", "content": question}, *[o.model_dump(exclude_none=True) for o in r.output],
                      {"role": "user", "content": "Thanks"}]
    without = [{"role": "user", "content": question}, {"role": "assistant", "content": r.output_text},
               {"role": "user", "content": "Thanks"}]
    a = ask(sc, "plain", input=with_reasoning, max_output_tokens=4)
    b = ask(sc, "plain", input=without, max_output_tokens=4)
    assert a.usage.input_tokens == b.usage.input_tokens and a.output_text == b.output_text
    chained = ask(sc, "plain", previous_response_id=r.id, input="Thanks", max_output_tokens=4)
    assert chained.usage.input_tokens == b.usage.input_tokens
    only_reasoning = ask(sc, "plain", max_output_tokens=4, input=[
        {"role": "user", "content": "Thanks"},
        {"type": "reasoning", "id": "rs_x", "summary": [{"type": "summary_text", "text": "secret"}]}])
    alone = ask(sc, "plain", max_output_tokens=4, input="Thanks")
    assert only_reasoning.usage.input_tokens == alone.usage.input_tokens


def test_failure_mid_stream_is_response_failed(sc):
    with sc.responses.stream(model="scripted", instructions="EXPLODE", input=BY_NAME["think"]["messages"][0]["content"],
                             max_output_tokens=60, temperature=0) as s:
        events = list(s)
    assert events[0].type == "response.created"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    last = events[-1]
    assert last.type == "response.failed" and last.response.status == "failed"
    assert last.response.error.code == "server_error" and "injected parser failure" in last.response.error.message
    added = [e.item.id for e in events if e.type == "response.output_item.added"]
    assert added == [e.item.id for e in events if e.type == "response.output_item.done"]
    assert [o.id for o in last.response.output] == added
    ok = ask(sc, "think")  # the server goes on serving
    assert ok.status == "completed"


def test_reasoning_effort_none_turns_thinking_off(sc):
    on = ask(sc, "plain", reasoning={"effort": "medium"}, max_output_tokens=2)
    off = ask(sc, "plain", reasoning={"effort": "none"}, max_output_tokens=2)
    assert off.usage.input_tokens > on.usage.input_tokens  # the template's empty <think></think> block
    assert off.reasoning.effort == "none"
