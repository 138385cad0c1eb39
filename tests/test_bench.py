"""`vllm-mlx bench`: each mode prints one well-formed JSON line per concurrency level."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import API_KEY

KEYS = {"conc", "requests", "errors", "out_tokens", "wall_s", "tok_s", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms",
        "label", "mode"}


def bench(*args):
    out = subprocess.run([sys.executable, "-m", "vllm_mlx.cli.main", "bench", *args], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def check(lines, mode, levels=(1, 3), max_tokens=4):
    assert [line["conc"] for line in lines] == list(levels)
    for line in lines:
        assert KEYS <= set(line) and line["mode"] == mode and line["errors"] == 0
        assert line["out_tokens"] == line["requests"] * max_tokens and line["tok_s"] > 0


def test_bench_engine_and_raw(random_model_dir):
    check(bench("engine", str(random_model_dir), "--conc", "1,3", "--max-tokens", "4", "--prompt-words", "8"),
          "engine")
    check(bench("raw", str(random_model_dir), "--conc", "1,3", "--max-tokens", "4", "--prompt-tokens", "8"), "raw")


def test_bench_serve_against_the_server(server, tmp_path):
    out = tmp_path / "lines.jsonl"
    lines = bench("serve", "--url", server.url, "--api-key", API_KEY, "--conc", "1,3", "--max-tokens", "4",
                  "--prompt-words", "8", "--json-out", str(out))
    check(lines, "serve")
    assert [json.loads(x) for x in out.read_text().splitlines()] == lines
    check(bench("serve", "--api", "messages", "--url", server.url, "--api-key", API_KEY, "--conc", "1,3",
                "--max-tokens", "4", "--prompt-words", "8"), "serve")
    check(bench("serve", "--api", "responses", "--url", server.url, "--api-key", API_KEY, "--conc", "1,3",
                "--max-tokens", "4", "--prompt-words", "8"), "serve")


def test_bench_serve_compares_apis_in_rotating_rounds(server):
    lines = bench("serve", "--api", "chat,messages,responses", "--rounds", "2", "--url", server.url,
                  "--api-key", API_KEY, "--conc", "2", "--max-tokens", "4", "--prompt-words", "8")
    levels, [summary] = lines[:-1], lines[-1:]
    assert [(x["api"], x["round"]) for x in levels] == [("chat", 1), ("messages", 1), ("responses", 1),
                                                        ("messages", 2), ("responses", 2), ("chat", 2)]
    check(levels, "serve", levels=(2,) * 6)
    assert summary["summary"] and summary["mode"] == "serve-compare" and summary["rounds"] == 2
    assert set(summary["median_tok_s"]) == {"chat", "messages", "responses"}
    assert set(summary["cost_vs_chat_pct"]) == {"messages", "responses"}
    assert summary["errors"] == {"chat": 0, "messages": 0, "responses": 0}


def test_bench_prefix_reports_every_scenario(random_model_dir):
    lines = bench("prefix", str(random_model_dir), "--system-tokens", "200", "--burst", "3", "--conc", "4",
                  "--max-tokens", "4", "--capacity-requests", "3", "--repeats", "1")
    by = {line["scenario"]: line for line in lines}
    assert set(by) == {"warm_repeat", "cold_burst", "conversation", "capacity", "no_share"}
    assert by["warm_repeat"]["cached_tokens"] >= 160 and by["cold_burst"]["requests_served_from_cache"] == 2
    assert by["conversation"]["ok"] and by["capacity"]["failed"] == 0
    assert by["capacity"]["shared_system_prompt"]["cached_blocks"] < \
        by["capacity"]["shared_system_prompt"]["full_copy_per_conversation_blocks"]
    assert by["no_share"]["tok_s_caching_on"] > 0


def test_bench_soak_leaves_no_failures_and_no_kv_blocks_held(server):
    out = subprocess.run([sys.executable, "-m", "vllm_mlx.cli.main", "bench", "soak", "--url", server.url,
                          "--api-key", API_KEY, "--streams", "8", "--duration", "6", "--warmup", "2",
                          "--prompt-words", "20", "--system-words", "20", "--max-tokens", "16",
                          "--disconnect-rate", "0.3"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["requests"] > 20 and record["ok"] > 10 and record["failed"] == 0, record
    assert record["idle"] and record["kv_blocks_in_use"] == 0 and record["engine_state"] == "running"
    assert record["rss_start_mib"] > 0


def test_bench_soak_refuses_remote_servers():
    out = subprocess.run([sys.executable, "-m", "vllm_mlx.cli.main", "bench", "soak", "--url",
                          "http://10.1.2.3:8000", "--duration", "1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "this machine only" in out.stderr
