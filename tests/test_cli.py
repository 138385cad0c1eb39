"""The command line: help texts, and clear one-line errors for models that cannot be had."""

from __future__ import annotations

import os
import subprocess
import sys


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vllm_mlx.cli.main", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_help_lists_commands_and_flags():
    top = cli("--help")
    assert top.returncode == 0 and all(c in top.stdout for c in ("serve", "plugins", "bench"))
    serve = cli("serve", "--help")
    for flag in ("--host", "--port", "--api-key", "--served-model-name", "--max-num-seqs", "--max-model-len",
                 "--plugin", "--reasoning-parser", "--tool-call-parser", "--enable-auto-tool-choice",
                 "--default-chat-template-kwargs", "--log-level"):
        assert flag in serve.stdout
    assert cli("plugins", "--help").returncode == 0
    assert cli("bench", "--help").returncode == 0


def test_offline_hub_id_gives_a_one_line_error(tmp_path):
    out = cli("serve", "some-org/some-model-that-is-not-cached", "--port", "1",
              env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)})
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: cannot download 'some-org/some-model-that-is-not-cached'")
    assert "offline" in lines[-1]


def test_folder_without_config_is_rejected(tmp_path):
    out = cli("serve", str(tmp_path), "--port", "1")
    assert out.returncode == 2 and "no config.json" in out.stderr


def test_bad_default_chat_template_kwargs_is_a_usage_error(tmp_path):
    out = cli("serve", str(tmp_path), "--default-chat-template-kwargs", "[1]")
    assert out.returncode == 2 and "JSON object" in out.stderr


def test_kv_cache_flags_are_listed_and_bad_values_are_one_line_errors(random_model_dir):
    serve = cli("serve", "--help")
    for flag in ("--kv-cache-memory", "--block-size", "--enable-prefix-caching", "--kv-cache-bits",
                 "--kv-cache-group-size", "--sliding-window", "--cache-policy"):
        assert flag in serve.stdout
    out = cli("serve", str(random_model_dir), "--port", "1", "--sliding-window", "0")
    assert out.returncode == 2 and "--sliding-window applies to models with sliding-window layers" in out.stderr
    out = cli("serve", str(random_model_dir), "--port", "1", "--kv-cache-memory", "lots")
    assert out.returncode == 2 and "--kv-cache-memory lots" in out.stderr
    out = cli("serve", str(random_model_dir), "--port", "1", "--cache-policy", "nope")
    assert out.returncode == 2 and "unknown cache policy 'nope'" in out.stderr
    # The random model's 16-wide heads cannot be quantized in groups of 32 or more: said at start-up.
    out = cli("serve", str(random_model_dir), "--port", "1", "--kv-cache-bits", "8")
    assert out.returncode == 2 and "group size" in out.stderr


def test_older_vllm_mlx_command_lines_still_work(random_model_dir):
    serve = cli("serve", "--help")
    assert "--continuous-batching" in serve.stdout and "always continuous" in serve.stdout
    # GEMMA3_SLIDING_WINDOW is read as --sliding-window, with a notice naming the flag (this llama model then
    # refuses the option, which shows the value arrived).
    out = cli("serve", str(random_model_dir), "--port", "1", "--continuous-batching",
              env={"GEMMA3_SLIDING_WINDOW": "0"})
    assert "GEMMA3_SLIDING_WINDOW=0 is read as --sliding-window 0" in out.stderr
    assert out.returncode == 2 and "--sliding-window applies to models with sliding-window layers" in out.stderr


def test_python_m_vllm_mlx_server_with_model_option_and_kv_bits(random_model_dir):
    out = subprocess.run([sys.executable, "-m", "vllm_mlx.server", "--model", str(random_model_dir), "--port", "1",
                          "--kv-bits", "8", "--mllm"], capture_output=True, text=True, timeout=120)
    # Reaching the KV quantization check proves the model and the older flags were taken.
    assert out.returncode == 2 and "group size" in out.stderr
