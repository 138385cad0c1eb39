"""Bad input gets a 4xx in OpenAI's error shape, never a 500 or a hang; auth; health; metrics."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
OK_MSG = [{"role": "user", "content": "hi"}]


def post(server, path, body, headers=AUTH, raw=None):
    content = raw if raw is not None else json.dumps(body)
    return httpx.post(server.url + path, content=content, headers={**headers, "Content-Type": "application/json"},
                      timeout=30)


def assert_openai_error(resp, status, param=None):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param
    return err


@pytest.mark.parametrize("body,param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
    ({"messages": "hello"}, "messages"),
    ({"messages": [{"content": "no role"}]}, "messages"),
    ({"messages": OK_MSG, "max_tokens": -5}, "max_tokens"),
    ({"messages": OK_MSG, "max_tokens": "ten"}, "max_tokens"),
    ({"messages": OK_MSG, "n": 0}, "n"),
    ({"messages": OK_MSG, "temperature": -1}, "temperature"),
    ({"messages": OK_MSG, "top_p": 5}, "top_p"),
    ({"messages": OK_MSG, "logit_bias": {"abc": 1}}, "logit_bias"),
    ({"messages": OK_MSG, "logit_bias": {"99999999": 1}}, "logit_bias"),
    ({"messages": OK_MSG, "top_logprobs": 3}, "top_logprobs"),
    ({"messages": OK_MSG, "logprobs": True, "top_logprobs": 50}, "logprobs"),
    ({"messages": OK_MSG, "stop": 5}, "stop"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
    ({}, "messages"),
    ({"messages": OK_MSG, "response_format": {"type": "yaml"}}, "response_format"),
    ({"messages": OK_MSG, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
    ({"messages": OK_MSG, "response_format": {"type": "json_schema",
                                              "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
     "response_format"),
    ({"messages": OK_MSG, "tool_choice": "sometimes"}, "tool_choice"),
    ({"messages": OK_MSG, "tool_choice": "required"}, "tool_choice"),
    ({"messages": OK_MSG, "tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
    ({"messages": OK_MSG, "tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function"}}, "tool_choice"),
    ({"messages": OK_MSG, "tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools"),
])
def test_chat_bad_input_is_400(server, body, param):
    assert_openai_error(post(server, "/v1/chat/completions", body), 400, param)


@pytest.mark.parametrize("raw", ["{not json", "", "[1, 2]", "null"])
def test_malformed_body_is_400(server, raw):
    assert_openai_error(post(server, "/v1/chat/completions", None, raw=raw), 400)


@pytest.mark.parametrize("body,param", [
    ({"prompt": []}, "prompt"),
    ({"prompt": [5, -1]}, "prompt"),
    ({"prompt": [5, 10 ** 9]}, "prompt"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": [{"a": 1}]}, "prompt"),
])
def test_completion_bad_input_is_400(server, body, param):
    assert_openai_error(post(server, "/v1/completions", body), 400, param)


def test_unknown_model_is_404(server):
    err = assert_openai_error(post(server, "/v1/chat/completions", {"model": "gpt-9", "messages": OK_MSG}), 404)
    assert err["code"] == "model_not_found"


def test_prompt_longer_than_context_is_rejected_at_once(server):
    long = "fox " * 2000  # the server runs with --max-model-len 512
    t0 = time.monotonic()
    err = assert_openai_error(post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": long}]}),
                              400)
    assert time.monotonic() - t0 < 5
    assert "context length" in err["message"] and err["code"] == "context_length_exceeded"
    err = assert_openai_error(post(server, "/v1/chat/completions", {"messages": OK_MSG, "max_tokens": 100000}), 400,
                              "max_tokens")


def test_api_key_required_on_v1_but_not_health(server):
    assert_openai_error(httpx.get(server.url + "/v1/models"), 401)
    assert_openai_error(httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    assert httpx.get(server.url + "/v1/models", headers=AUTH).status_code == 200
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "random-llama" and health["kind"] == "llm"
    assert health["engine"]["state"] == "running"


def test_openai_client_sees_auth_error(server):
    from openai import AuthenticationError, OpenAI

    bad = OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(AuthenticationError):
        bad.models.list()


def test_unknown_route_is_openai_404(server):
    assert_openai_error(httpx.get(server.url + "/v1/nothing", headers=AUTH), 404)


def test_models_list(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["random-llama"]


def metric(server, name):
    text = httpx.get(server.url + "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_count_tokens_and_latency(server, client):
    before = metric(server, "vllm:generation_tokens_total")
    client.chat.completions.create(model="default", messages=OK_MSG, max_tokens=5, temperature=0,
                                   extra_body={"ignore_eos": True})
    assert metric(server, "vllm:generation_tokens_total") == before + 5
    assert metric(server, "vllm:time_to_first_token_seconds_count") >= 1
    assert metric(server, "vllm:inter_token_latency_seconds_count") >= 4
    assert metric(server, "vllm:num_requests_running") == 0


def test_client_disconnect_cancels_the_request(server):
    body = {"messages": OK_MSG, "max_tokens": 400, "stream": True, "ignore_eos": True, "temperature": 0}
    aborted_before = _finished(server, "abort")
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", server.url + "/v1/chat/completions", json=body, headers=AUTH) as resp:
            assert resp.status_code == 200
            for n, _ in enumerate(resp.iter_lines()):
                if n > 6:
                    break
        # leaving the block closes the connection mid-stream
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and metric(server, "vllm:num_requests_running") > 0:
        time.sleep(0.02)
    assert metric(server, "vllm:num_requests_running") == 0
    assert _finished(server, "abort") == aborted_before + 1
    assert metric(server, "vllm:generation_tokens_total") >= 0


def _finished(server, reason):
    text = httpx.get(server.url + "/metrics").text
    for line in text.splitlines():
        if line.startswith("vllm:request_success_total") and f'finished_reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_engine_survives_the_bad_inputs(client):
    r = client.chat.completions.create(model="default", messages=OK_MSG, max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason in ("length", "stop")


def test_non_streaming_client_that_gives_up_frees_its_slot(server):
    body = {"messages": OK_MSG, "max_tokens": 495, "ignore_eos": True, "temperature": 0}
    aborted_before = _finished(server, "abort")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=0.3)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and metric(server, "vllm:num_requests_running") > 0:
        time.sleep(0.02)
    assert metric(server, "vllm:num_requests_running") == 0
    assert _finished(server, "abort") == aborted_before + 1


def test_top_k_beyond_vocabulary_means_no_limit(client):
    r = client.chat.completions.create(model="default", messages=OK_MSG, max_tokens=4, temperature=1.0,
                                       extra_body={"top_k": 10 ** 6, "ignore_eos": True})
    assert r.usage.completion_tokens == 4


def test_model_lookup_by_name_and_alias(client):
    assert client.models.retrieve("random-llama").id == "random-llama"
    assert client.models.retrieve("default").id == "random-llama"
    from openai import NotFoundError

    with pytest.raises(NotFoundError):
        client.models.retrieve("nope")


def test_cors_is_off_by_default(server):
    resp = httpx.get(server.url + "/health", headers={"Origin": "http://example.test"})
    assert "access-control-allow-origin" not in resp.headers


def test_models_list_shape_suits_both_sdks(server):
    body = httpx.get(server.url + "/v1/models", headers=AUTH).json()
    assert body["object"] == "list" and body["has_more"] is False
    assert body["first_id"] == body["last_id"] == "random-llama"
    card = body["data"][0]
    assert card["object"] == "model" and card["type"] == "model" and card["owned_by"]
    assert card["display_name"] == "random-llama" and card["created_at"].endswith("Z")


def test_full_waiting_line_gets_429_with_retry_after(random_model_dir, tmp_path_factory):
    from server_process import ServerProcess

    srv = ServerProcess([str(random_model_dir), "--max-num-seqs", "1", "--max-queue", "1"],
                        log_path=tmp_path_factory.mktemp("logs") / "queue.log").wait_ready()
    long = {"messages": OK_MSG, "max_tokens": 400, "ignore_eos": True, "stream": True}
    try:
        with httpx.Client(timeout=30) as a, httpx.Client(timeout=30) as b:
            with a.stream("POST", srv.url + "/v1/chat/completions", json=long) as r1, \
                    b.stream("POST", srv.url + "/v1/chat/completions", json=long) as r2:
                assert r1.status_code == 200 and r2.status_code == 200  # one running, one waiting
                busy = httpx.post(srv.url + "/v1/chat/completions", json={"messages": OK_MSG, "max_tokens": 2})
                err = assert_openai_error(busy, 429)
                assert busy.headers["retry-after"] == "1" and err["code"] == "server_busy"
        # both streams were closed: the line empties and requests are served again
        deadline = time.monotonic() + 10
        while True:
            ok = httpx.post(srv.url + "/v1/chat/completions", json={"messages": OK_MSG, "max_tokens": 2})
            if ok.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert ok.status_code == 200
    finally:
        srv.stop()
