"""Plugins: built-ins, an installed entry-point package, --plugin files, broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SHOUTY = HERE / "plugins" / "shouty_plugin.py"
BROKEN = HERE / "plugins" / "broken_plugin.py"


def cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "vllm_mlx.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    """A tiny third-party package installed the way pip installs one: a module plus a
    .dist-info folder whose entry_points.txt declares the ``vllm_mlx`` group."""
    site = tmp_path_factory.mktemp("site")
    (site / "whisper_tools.py").write_text(
        "from vllm_mlx.plugins import hookimpl\n"
        "from vllm_mlx.plugins.parsers.json_tool_tags import JsonToolTagParser\n"
        "class WhisperToolParser(JsonToolTagParser):\n"
        "    name = 'whisper_tools'\n"
        "@hookimpl\n"
        "def register_tool_parsers():\n"
        "    return [WhisperToolParser]\n")
    dist = site / "whisper_tools-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: whisper-tools\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[vllm_mlx]\nwhisper_tools = whisper_tools\n")
    (dist / "RECORD").write_text("")
    return site


def test_plugins_command_lists_builtins():
    out = cli("plugins", "--json")
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["qwen3"]["source"] == "builtin"
    assert "qwen3" in plugins["qwen3"]["provides"]["reasoning_parsers"]
    assert "deepseek_r1" in plugins["deepseek"]["provides"]["reasoning_parsers"]
    assert "kokoro" in plugins["kokoro"]["provides"]["model_loaders"]
    assert "gemma3" in plugins["gemma3"]["provides"]["model_loaders"]
    assert "mlx-lm" in plugins["mlx_lm_loader"]["provides"]["model_loaders"]


def test_entry_point_plugin_is_discovered(installed_plugin):
    out = cli("plugins", "--json", env={"PYTHONPATH": str(installed_plugin)})
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["whisper_tools"]["source"] == "entry point"
    assert plugins["whisper_tools"]["provides"] == {"tool_parsers": ["whisper_tools"]}


def test_plugin_file_is_listed():
    out = cli("plugins", "--plugin", str(SHOUTY))
    assert out.returncode == 0, out.stderr
    assert "shouty" in out.stdout and "--plugin" in out.stdout


def test_broken_plugin_fails_startup_naming_it(random_model_dir):
    out = cli("serve", str(random_model_dir), "--plugin", str(BROKEN), "--port", "1")
    assert out.returncode == 2
    assert "broken_plugin" in out.stderr and "broken on purpose" in out.stderr


def test_unknown_parser_name_fails_startup(random_model_dir):
    out = cli("serve", str(random_model_dir), "--reasoning-parser", "nope", "--port", "1")
    assert out.returncode == 2
    assert "unknown reasoning parser 'nope'" in out.stderr and "qwen3" in out.stderr


def test_file_plugin_parser_is_used_by_the_server(random_model_dir, tmp_path_factory, mlx_model):
    from openai import OpenAI

    from server_process import ServerProcess

    srv = ServerProcess([str(random_model_dir), "--plugin", str(SHOUTY), "--reasoning-parser", "shouty",
                         "--default-chat-template-kwargs", '{"enable_thinking": false}',
                         "--allowed-origins", "http://example.test"],
                        log_path=tmp_path_factory.mktemp("logs") / "shouty.log").wait_ready()
    try:
        client = OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        r = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "the fox"}],
                                           max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
        text = r.choices[0].message.content
        assert text == text.upper() and text != text.lower()  # the plugin's parser shaped the answer
        # --default-chat-template-kwargs applies to every request (this template then adds an
        # empty think block); a request's own chat_template_kwargs override it
        on = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "the fox"}],
                                            max_tokens=1, extra_body={"chat_template_kwargs": {"enable_thinking": True}})
        assert r.usage.prompt_tokens > on.usage.prompt_tokens
        import httpx  # --allowed-origins turns CORS on for that origin only

        ok = httpx.get(srv.url + "/health", headers={"Origin": "http://example.test"})
        other = httpx.get(srv.url + "/health", headers={"Origin": "http://evil.test"})
        assert ok.headers.get("access-control-allow-origin") == "http://example.test"
        assert "access-control-allow-origin" not in other.headers
    finally:
        srv.stop()


def test_entry_point_tool_parser_is_used_by_the_server(random_model_dir, installed_plugin, tmp_path_factory):
    import httpx

    from server_process import ServerProcess

    srv = ServerProcess([str(random_model_dir), "--tool-call-parser", "whisper_tools", "--enable-auto-tool-choice"],
                        env={"PYTHONPATH": str(installed_plugin)},
                        log_path=tmp_path_factory.mktemp("logs") / "ep.log").wait_ready()
    try:
        health = httpx.get(srv.url + "/health").json()
        assert health["status"] == "ok"
        tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        r = httpx.post(srv.url + "/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "x"}], "tools": [tool], "max_tokens": 3}, timeout=30)
        assert r.status_code == 200
    finally:
        srv.stop()


def test_misspelled_hook_is_reported():
    out = cli("plugins", "--plugin", str(HERE / "plugins" / "typo_plugin.py"))
    assert out.returncode == 2
    assert "typo_plugin" in out.stderr and "register_reasoning_parser" in out.stderr
