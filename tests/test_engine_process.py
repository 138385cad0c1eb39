"""`serve --engine-process`: the engine in a child process, the same answers as in one process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import openai
import pytest

from server_process import ServerProcess
from test_server_chat import reference_text


def _child_pids(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


@pytest.fixture(scope="module")
def ep_server(random_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "engine-process.log"
    srv = ServerProcess([str(random_model_dir), "--engine-process", "--max-num-seqs", "16",
                         "--max-model-len", "512"], log_path=log).wait_ready()
    yield srv
    children = _child_pids(srv.proc.pid)
    srv.stop()
    deadline = time.monotonic() + 15
    while any(os.path.exists(f"/proc/{pid}") for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")], "engine process left behind"


def _client(srv, cls=openai.OpenAI):
    return cls(base_url=srv.url + "/v1", api_key="unused", max_retries=0)


def test_health_reports_the_engine_running_in_its_own_process(ep_server):
    body = httpx.get(ep_server.url + "/health").json()
    assert body["engine"]["state"] == "running"
    assert body["kv_cache"]["blocks_total"] > 0  # the child's KV plan crossed over
    children = _child_pids(ep_server.proc.pid)
    assert children, "no engine process under the server"


def test_concurrent_greedy_equals_alone_and_mlx_lm(ep_server, mlx_model):
    convs = [[{"role": "user", "content": f"pack my box {i} " + "fox " * (i % 5)}] for i in range(10)]

    async def one(client, messages, stream):
        if not stream:
            r = await client.chat.completions.create(model="default", messages=messages, max_tokens=14,
                                                     temperature=0)
            return r.choices[0].message.content
        chunks = await client.chat.completions.create(model="default", messages=messages, max_tokens=14,
                                                      temperature=0, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    async def together():
        async with _client(ep_server, openai.AsyncOpenAI) as client:
            return await asyncio.gather(*(one(client, m, i % 2 == 1) for i, m in enumerate(convs)))

    crowd = asyncio.run(together())
    for m, text in zip(convs, crowd):
        assert text == reference_text(mlx_model, m, 14)[0]


def test_sampling_settings_logprobs_and_structured_output_cross_over(ep_server):
    client = _client(ep_server)
    msg = [{"role": "user", "content": "the quick brown fox"}]
    a = client.chat.completions.create(model="default", messages=msg, max_tokens=12, temperature=0.9, seed=7)
    b = client.chat.completions.create(model="default", messages=msg, max_tokens=12, temperature=0.9, seed=7)
    assert a.choices[0].message.content == b.choices[0].message.content
    r = client.chat.completions.create(model="default", messages=msg, max_tokens=3, temperature=0, logprobs=True,
                                       top_logprobs=2)
    entries = r.choices[0].logprobs.content
    assert entries and all(len(e.top_logprobs) == 2 for e in entries)
    r = client.chat.completions.create(
        model="default", messages=msg, max_tokens=40, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": {
            "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}})
    if r.choices[0].finish_reason == "stop":  # random weights may run out of tokens first
        assert isinstance(json.loads(r.choices[0].message.content)["a"], int)
    else:
        assert r.choices[0].message.content.startswith("{")
    r = client.chat.completions.create(model="default", messages=msg, max_tokens=8, temperature=0, n=2)
    assert len(r.choices) == 2 and r.choices[0].message.content == r.choices[1].message.content


def test_a_client_that_leaves_mid_stream_frees_its_sequence(ep_server):
    client = _client(ep_server)
    stream = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "go"}],
                                            max_tokens=200, temperature=0, stream=True,
                                            extra_body={"ignore_eos": True})
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if httpx.get(ep_server.url + "/health").json()["engine"]["running"] == 0:
            break
        time.sleep(0.3)
    assert httpx.get(ep_server.url + "/health").json()["engine"]["running"] == 0


def test_a_dead_engine_process_fails_requests_and_health(random_model_dir, tmp_path):
    srv = ServerProcess([str(random_model_dir), "--engine-process", "--max-model-len", "512"],
                        log_path=tmp_path / "dead.log").wait_ready()
    try:
        client = _client(srv)
        stream = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "go"}],
                                                max_tokens=400, temperature=0, stream=True,
                                                extra_body={"ignore_eos": True})
        it = iter(stream)
        next(it)
        for pid in _child_pids(srv.proc.pid):
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(openai.APIError):
            for _ in it:  # the stream ends with an error event, never as a normal finish
                pass
        health = httpx.get(srv.url + "/health")
        assert health.status_code == 503
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}],
                                           max_tokens=4)
        assert srv.proc.poll() is None  # the server itself still answers
    finally:
        srv.stop()
    assert srv.proc.returncode is not None
