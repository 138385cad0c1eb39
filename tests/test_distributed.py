"""Distributed serving: 2 local ranks on the ring backend, started by `vllm-mlx launch`.

Output must equal the single process token for token (greedy and seeded), alone and
8 at a time with cancellations, for tensor and pipeline parallel; a killed or hung
rank, or ranks that fall out of lockstep, fail loudly (errors, /health 503, non-zero
exit) and leave no process behind. Token counts are small: the ring backend
busy-polls, which makes every step slow on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from conftest import API_KEY
from distributed_process import LaunchedServer
from model_factory import build_random_model
from server_process import ServerProcess

PROMPTS = ["The quick brown fox", "def add(a, b):", "Grüße aus München", "Numbers 0 1 2 3",
           "Continuous batching lets", "Pack my box with", "print(add(2, 3))", "Emoji: and symbols"]
VARIANTS = [
    {"temperature": 0},
    {"temperature": 0.9, "seed": 11},
    {"temperature": 0, "logprobs": 2},
    {"temperature": 0.8, "top_p": 0.9, "seed": 5},
    {"temperature": 0.7, "seed": 3, "n": 2},
    {"temperature": 0, "presence_penalty": 0.5, "stop": [" the"]},
    {"temperature": 1.0, "extra_body": {"top_k": 20}, "seed": 7, "logprobs": 1},
    {"temperature": 0, "frequency_penalty": 0.4},
]
MAX_TOKENS = 10
CANCELLED = {2, 5}


def _summary(resp) -> list:
    out = []
    for c in sorted(resp.choices, key=lambda c: c.index):
        tokens = c.logprobs.tokens if c.logprobs else None
        out.append((c.index, c.text, c.finish_reason, tokens))
    return out


async def _one(client, model: str, i: int, cancel: bool):
    if cancel:  # a client that goes away mid-stream
        stream = await client.completions.create(model=model, prompt=PROMPTS[i], max_tokens=60, temperature=0,
                                                 stream=True, extra_body={"ignore_eos": True})
        got = 0
        async for _ in stream:
            got += 1
            if got >= 2:
                break
        await stream.close()
        return None
    resp = await client.completions.create(model=model, prompt=PROMPTS[i], max_tokens=MAX_TOKENS,
                                           **VARIANTS[i % len(VARIANTS)])
    return _summary(resp)


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


async def _structured_chat(client, model: str):
    """Structured output: every rank must apply the same grammar mask."""
    resp = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Give me a JSON object."}], max_tokens=12,
        temperature=0, response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}})
    return [resp.choices[0].message.content, resp.choices[0].finish_reason]


LONG = 30  # tokens: 3 such sequences need ~27 blocks of 4 tokens, more than the tight cache's 20


def run_long(url: str, model: str, concurrent: bool) -> list:
    """3 greedy requests that cannot all fit the tight KV cache at once: run together, some are preempted."""
    from openai import AsyncOpenAI

    async def one(client, i):
        resp = await client.completions.create(model=model, prompt=PROMPTS[i], max_tokens=LONG, temperature=0,
                                               extra_body={"ignore_eos": True})
        return _summary(resp)

    async def main():
        async with AsyncOpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=180) as client:
            if concurrent:
                return await asyncio.gather(*(one(client, i) for i in range(3)))
            return [await one(client, i) for i in range(3)]

    return asyncio.run(main())


def cached_tokens_of_repeat(url: str, model: str) -> int:
    """The same prompt twice in a row: the second is served from the prefix cache."""
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
    prompt = " ".join(PROMPTS[:3])
    for _ in range(2):
        resp = client.completions.create(model=model, prompt=prompt, max_tokens=2, temperature=0)
    return resp.usage.prompt_tokens_details.cached_tokens


def run_requests(url: str, model: str, concurrent: bool, cancel: set[int] = frozenset()) -> list:
    from openai import AsyncOpenAI

    async def main():
        async with AsyncOpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=180) as client:
            if concurrent:
                return await asyncio.gather(*(_one(client, model, i, i in cancel) for i in range(len(PROMPTS))))
            return [await _one(client, model, i, i in cancel) for i in range(len(PROMPTS))] + \
                [await _structured_chat(client, model)]

    return asyncio.run(main())


def _serve_args(model_dir: Path, *extra: str) -> list[str]:
    return [str(model_dir), "--api-key", API_KEY, "--served-model-name", "m", "--max-model-len", "512", *extra]


def _launch(tmp_path_factory, name: str, serve_args: list[str], **kw) -> LaunchedServer:
    log = tmp_path_factory.mktemp("logs") / f"{name}.log"
    return LaunchedServer(serve_args, log, **kw)


# -- output equals the single process ---------------------------------------------------


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory) -> Path:
    """qwen2 shards both ways in mlx-lm (tensor and pipeline)."""
    return build_random_model(tmp_path_factory.mktemp("models") / "random-qwen2", arch="qwen2")


@pytest.fixture(scope="module")
def reference(random_model_dir, qwen2_dir, tmp_path_factory):
    """Single-process outputs of both models, each request alone."""
    out = {}
    for name, path in (("llama", random_model_dir), ("qwen2", qwen2_dir)):
        log = tmp_path_factory.mktemp("logs") / f"single-{name}.log"
        srv = ServerProcess(_serve_args(path), log_path=log).wait_ready()
        try:
            out[name] = run_requests(srv.url, "m", concurrent=False)
            out[name + "-long"] = run_long(srv.url, "m", concurrent=False)
        finally:
            srv.stop()
    return out


@pytest.mark.parametrize("family, flag", [("llama", "--tensor-parallel-size"), ("qwen2", "--pipeline-parallel-size")],
                         ids=["tp2-llama", "pp2-qwen2"])
def test_output_equals_single_process(family, flag, reference, random_model_dir, qwen2_dir, tmp_path_factory):
    model_dir = random_model_dir if family == "llama" else qwen2_dir
    # A KV cache of 20 blocks of 4 tokens: the concurrent requests do not fit at once, so the
    # schedule admits late and preempts, and the ranks must agree on every such decision.
    tight = ["--block-size", "4", "--kv-cache-memory", "0.02MiB"]
    srv = _launch(tmp_path_factory, f"{family}-{flag}", _serve_args(model_dir, flag, "2", *tight)).wait_ready()
    try:
        assert run_requests(srv.url, "m", concurrent=False) == reference[family]
        got = run_requests(srv.url, "m", concurrent=True, cancel=CANCELLED)
        for i, result in enumerate(got):
            if i in CANCELLED:
                assert result is None
            else:
                assert result == reference[family][i], f"request {i} ({VARIANTS[i]})"
        # the cancellations left the group in step: it still serves, and still the same
        assert run_requests(srv.url, "m", concurrent=False)[:2] == reference[family][:2]
        # preemption: every rank must take the same sequence out and resume it the same way
        assert run_long(srv.url, "m", concurrent=True) == reference[family + "-long"]
        assert httpx.get(srv.url + "/health").json()["kv_cache"]["preemptions"] > 0
        assert cached_tokens_of_repeat(srv.url, "m") > 0
        code = srv.stop()  # SIGTERM to the launcher: rank 0 drains, every rank exits 0
        assert code == 0, srv.log()
        assert srv.live_ranks() == []
    finally:
        srv.close()


# -- failures -------------------------------------------------------------------------------


def _stream_until_error(url: str, result: dict) -> None:
    """A long streaming request; records how it ended (error or finish_reason)."""
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
    try:
        stream = client.completions.create(model="m", prompt=PROMPTS[0], max_tokens=480, temperature=0,
                                           stream=True, extra_body={"ignore_eos": True})
        for chunk in stream:
            result["chunks"] = result.get("chunks", 0) + 1
            if chunk.choices and chunk.choices[0].finish_reason:
                result["finish"] = chunk.choices[0].finish_reason
        result.setdefault("finish", None)
    except Exception as exc:  # noqa: BLE001 - the error is what we look for
        result["error"] = f"{type(exc).__name__}: {exc}"


def test_killed_peer_fails_requests_and_exits(random_model_dir, tmp_path_factory):
    srv = _launch(tmp_path_factory, "sigkill", _serve_args(random_model_dir, "-tp", "2")).wait_ready()
    try:
        result: dict = {}
        t = threading.Thread(target=_stream_until_error, args=(srv.url, result))
        t.start()
        deadline = time.monotonic() + 60
        while result.get("chunks", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert result.get("chunks", 0) >= 2, srv.log()
        srv.signal_rank(1, signal.SIGKILL)
        code = srv.wait_exit(20)
        t.join(30)
        assert code not in (None, 0), srv.log()
        assert "error" in result or result.get("finish") == "error", result  # never a truncated success
        assert srv.live_ranks() == []
    finally:
        srv.close()


def test_hung_peer_turns_health_503_and_exits(random_model_dir, tmp_path_factory):
    srv = _launch(tmp_path_factory, "sigstop",
                  _serve_args(random_model_dir, "-tp", "2", "--distributed-timeout", "3")).wait_ready()
    try:
        srv.signal_rank(1, signal.SIGSTOP)
        result: dict = {}
        t = threading.Thread(target=_stream_until_error, args=(srv.url, result))
        t.start()
        seen_503 = False
        deadline = time.monotonic() + 90
        while srv.proc.poll() is None and time.monotonic() < deadline:
            seen_503 = seen_503 or srv.health() == 503
            time.sleep(0.1)
        code = srv.wait_exit(30)
        t.join(30)
        assert seen_503, srv.log()
        assert code not in (None, 0), srv.log()
        assert "error" in result or result.get("finish") == "error", result
        assert srv.live_ranks() == []
    finally:
        srv.close()


def test_desync_is_detected(random_model_dir, tmp_path_factory):
    """A test-only hook makes rank 1's state hash differ at its third step: the group must stop loudly."""
    srv = _launch(tmp_path_factory, "desync", _serve_args(random_model_dir, "-tp", "2"),
                  env={"VLLM_MLX_TEST_DESYNC": "1:3"}).wait_ready()
    try:
        result: dict = {}
        _stream_until_error(srv.url, result)
        code = srv.wait_exit(60)
        assert "error" in result or result.get("finish") == "error", result
        assert code not in (None, 0)
        assert "out of lockstep" in srv.log()
        assert srv.live_ranks() == []
    finally:
        srv.close()


# -- start-up errors -------------------------------------------------------------------------


def test_family_that_cannot_shard_that_way_is_a_clear_error(random_model_dir, tmp_path_factory):
    srv = _launch(tmp_path_factory, "llama-pp", _serve_args(random_model_dir, "--pipeline-parallel-size", "2"))
    try:
        code = srv.wait_exit(120)
        assert code not in (None, 0)
        log = srv.log()
        assert "model family 'llama' cannot be split by pipeline parallelism" in log
        assert "supports only tensor parallel" in log
        assert srv.live_ranks() == []
    finally:
        srv.close()


def test_parallel_size_without_launcher_says_how_to_launch(random_model_dir, monkeypatch):
    from vllm_mlx.cli.main import cli

    for name in ("MLX_RANK", "MLX_HOSTFILE", "VLLM_MLX_DIST_BACKEND", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli, ["serve", str(random_model_dir), "--tensor-parallel-size", "2"])
    assert result.exit_code == 2
    assert "vllm-mlx launch -n 2 -- serve" in result.output


def test_rank_without_parallel_size_is_refused(random_model_dir, monkeypatch):
    from vllm_mlx.cli.main import cli

    monkeypatch.setenv("MLX_RANK", "1")
    monkeypatch.setenv("MLX_HOSTFILE", "/nonexistent")
    result = CliRunner().invoke(cli, ["serve", str(random_model_dir)])
    assert result.exit_code == 2
    assert "launched as a rank of a distributed group" in result.output


def test_sharding_support_is_read_from_the_family(tmp_path):
    from mlx_lm.utils import load_model

    from vllm_mlx.distributed.group import DistributedError, Parallel, check_shardable

    path = build_random_model(tmp_path / "gemma", arch="gemma")
    model, _ = load_model(path, lazy=True)
    with pytest.raises(DistributedError, match="model family 'gemma' cannot be split by tensor parallelism; "
                                               "mlx-lm's gemma supports no sharding"):
        check_shardable(model, "gemma", Parallel(tensor=2))


def test_launch_needs_two_ranks():
    from vllm_mlx.cli.main import cli

    result = CliRunner().invoke(cli, ["launch", "--", "serve", "x"])
    assert result.exit_code == 2
    assert "at least 2 ranks" in result.output


def test_launch_restarts_a_failed_group_on_fresh_ports(tmp_path):
    """Every rank fails; the group is started again once (new ring ports), then the failure is the exit status."""
    import subprocess
    import sys

    # each rank appends its hostfile to a file of its own (the ranks share stdout, where lines interleave)
    script = ("import os, sys; rank = os.environ['MLX_RANK']; "
              f"f = open(os.path.join({str(tmp_path)!r}, 'rank' + rank), 'a'); "
              "f.write(open(os.environ['MLX_HOSTFILE']).read().replace(chr(10), ' ') + chr(10)); f.close(); "
              "sys.exit(4)")
    proc = subprocess.run([sys.executable, "-m", "vllm_mlx.cli.main", "launch", "-n", "2", "--restarts", "1", "--",
                           sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    hostfiles = (tmp_path / "rank0").read_text().splitlines()
    assert len(hostfiles) == 2 and hostfiles[0] != hostfiles[1], hostfiles
    assert "restarting the group on fresh ports" in proc.stderr
