"""Graceful shutdown: SIGTERM stops accepting, lets in-flight requests finish up to
--shutdown-timeout, cancels the rest, saves the prefix cache, and exits 0."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from server_process import ServerProcess


def stream_lines(url: str, max_tokens: int, out: list[str], started: threading.Event) -> None:
    body = {"model": "default", "prompt": "hello there", "max_tokens": max_tokens, "stream": True,
            "ignore_eos": True, "temperature": 0}
    try:
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as resp:
            for line in resp.iter_lines():
                if line:
                    out.append(line)
                    started.set()
    except httpx.HTTPError as exc:
        out.append(f"error: {type(exc).__name__}")
    started.set()


def start_stream(srv: ServerProcess, max_tokens: int) -> tuple[threading.Thread, list[str]]:
    out: list[str] = []
    started = threading.Event()
    t = threading.Thread(target=stream_lines, args=(srv.url, max_tokens, out, started), daemon=True)
    t.start()
    assert started.wait(30)
    return t, out


def test_sigterm_lets_in_flight_streams_finish_then_exits_0(random_model_dir, tmp_path):
    cache = tmp_path / "prefix-cache"
    srv = ServerProcess([str(random_model_dir), "--max-model-len", "512", "--shutdown-timeout", "30",
                         "--prefix-cache-dir", str(cache)], log_path=tmp_path / "log").wait_ready()
    t, out = start_stream(srv, 300)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    try:  # no longer accepting
        httpx.get(srv.url + "/health", timeout=2)
        accepting = True
    except httpx.HTTPError:
        accepting = False
    assert srv.proc.wait(60) == 0, srv.log()
    t.join(10)
    assert not accepting
    assert out[-1] == "data: [DONE]" and len(out) > 100  # the stream ran to its end
    assert any(cache.glob("*.safetensors"))  # the prefix cache was saved at shutdown
    srv.stop()


def test_sigterm_cancels_what_outlives_the_timeout_and_still_exits_0(random_model_dir, tmp_path):
    srv = ServerProcess([str(random_model_dir), "--shutdown-timeout", "0.5"], log_path=tmp_path / "log").wait_ready()
    t, out = start_stream(srv, 2000)
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(60) == 0, srv.log()
    t.join(10)
    assert out[0].startswith("data: {") and '"text"' in out[0]  # it was streaming
    assert out[-1] != "data: [DONE]" and len(out) < 2000  # and was cut off
    srv.stop()


def test_request_timeout_gives_408_or_an_error_event(random_model_dir, tmp_path):
    import openai
    import pytest

    srv = ServerProcess([str(random_model_dir), "--request-timeout", "1"], log_path=tmp_path / "log").wait_ready()
    try:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=60)
        long = {"model": "default", "messages": [{"role": "user", "content": "go on"}], "max_tokens": 1900,
                "temperature": 0, "extra_body": {"ignore_eos": True}}
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(**long)
        assert err.value.status_code == 408 and err.value.body["code"] == "request_timeout"
        chunks = []
        with pytest.raises(openai.APIError, match="request timed out after 1 s"):
            for chunk in client.chat.completions.create(**long, stream=True):
                chunks.append(chunk)
        assert len(chunks) > 2  # it streamed before the error event ended it
        short = client.chat.completions.create(**{**long, "max_tokens": 3})
        assert short.choices[0].finish_reason == "length"
    finally:
        srv.stop()
