"""The MCP config (mcp.json), tool naming and result limits, and the `vllm-mlx mcp` commands
against a real stdio MCP server; a config with a bad entry stops `serve` with a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mcp_model import TOOLBOX
from vllm_mlx.mcp_host import McpConfigError, load_config, parse_config
from vllm_mlx.mcp_host.policy import ToolArgumentsError, check_arguments, parse_arguments
from vllm_mlx.mcp_host.tools import function_name, parameters_of, truncate


def servers(**entries):
    return {"mcpServers": entries}


def test_claude_desktop_format_with_our_keys():
    cfg = parse_config(servers(
        files={"command": "npx", "args": ["-y", "server-fs", "${ROOT}"], "env": {"TOKEN": "${env:TOK}"},
               "cwd": "/srv", "blocked_tools": ["write_file"], "call_timeout": 5},
        search={"url": "http://127.0.0.1:9000/mcp", "headers": {"Authorization": "Bearer ${KEY}"},
                "allowed_tools": ["search"], "type": "streamable-http"},
        off={"command": "x", "disabled": True},
    ), environ={"ROOT": "/data", "TOK": "t0k", "KEY": "k3y"})
    files, search = cfg.servers["files"], cfg.servers["search"]
    assert set(cfg.servers) == {"files", "search"}
    assert (files.transport, files.command, files.args, files.env, files.cwd, files.call_timeout) == \
        ("stdio", "npx", ("-y", "server-fs", "/data"), {"TOKEN": "t0k"}, "/srv", 5.0)
    assert files.permits("read_file") and not files.permits("write_file")
    assert (search.transport, search.url, search.headers) == \
        ("http", "http://127.0.0.1:9000/mcp", {"Authorization": "Bearer k3y"})
    assert search.permits("search") and not search.permits("other")


def test_variables_expand_only_where_written():
    cfg = parse_config(servers(a={"command": "run", "args": ["$HOME", "${X}-$X"], "env": {"B": "plain"}}),
                       environ={"X": "1", "HOME": "/root"})
    assert cfg.servers["a"].args == ("$HOME", "1-$X") and cfg.servers["a"].env == {"B": "plain"}


@pytest.mark.parametrize("entry,words", [
    ({}, 'mcpServers.bad: give exactly one of "command"'),
    ({"command": "x", "url": "http://h/mcp"}, "give exactly one of"),
    ({"command": ""}, "mcpServers.bad.command: must not be empty"),
    ({"command": "x", "args": "a b"}, "mcpServers.bad.args: expected a list"),
    ({"command": "x", "args": [1]}, "mcpServers.bad.args[0]: expected a string"),
    ({"command": "x", "env": {"A": 1}}, "mcpServers.bad.env.A: expected a string"),
    ({"command": "x", "env": {"A": "${MISSING_VAR}"}}, "mcpServers.bad.env.A: environment variable MISSING_VAR"),
    ({"command": "x", "headers": {}}, '"headers" belongs to a "url" server'),
    ({"url": "http://h/mcp", "args": []}, 'belong to a "command" server'),
    ({"url": "ftp://h/mcp"}, "mcpServers.bad.url: expected an http:// or https:// URL"),
    ({"url": "http://h/mcp", "type": "sse"}, "SSE is not supported"),
    ({"command": "x", "allowed_tools": "read"}, "mcpServers.bad.allowed_tools: expected a list"),
    ({"command": "x", "call_timeout": 0}, "mcpServers.bad.call_timeout: expected a number of seconds > 0"),
    ({"command": "x", "comand": "y"}, "unknown key(s) comand"),
    ("npx", "mcpServers.bad: expected an object"),
])
def test_a_bad_entry_is_named(entry, words):
    with pytest.raises(McpConfigError) as err:
        parse_config(servers(good={"command": "ok"}, bad=entry), environ={})
    assert words in str(err.value)


def test_bad_files_and_names(tmp_path):
    with pytest.raises(McpConfigError, match="cannot read MCP config"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(McpConfigError, match="is not valid JSON"):
        load_config(tmp_path / "broken.json")
    with pytest.raises(McpConfigError, match='"mcpServers" object'):
        parse_config({"servers": {}})
    with pytest.raises(McpConfigError, match="mcpServers.my server: a server name may use only"):
        parse_config(servers(**{"my server": {"command": "x"}}))


def test_function_names_are_valid_and_unique():
    assert function_name("files", "read_file") == "files__read_file"
    assert function_name("files", "read.file/v2") == "files__read_file_v2"
    long = function_name("server", "t" * 100)
    assert len(long) == 64 and long != function_name("server", "t" * 99)
    taken = {function_name("files", "a.b")}
    other = function_name("files", "a_b", taken)
    assert other != "files__a_b" and other.startswith("files__a_b_") and len(other) <= 64


def test_parameters_and_arguments():
    assert parameters_of(None) == {"type": "object", "properties": {}}
    schema = parameters_of({"properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]})
    check_arguments(parse_arguments('{"n": 2}'), schema)
    for bad, words in (({}, "'n' is a required property"), ({"n": 0}, "at 'n': 0 is less than the minimum")):
        with pytest.raises(ToolArgumentsError, match=words):
            check_arguments(bad, schema)
    assert parse_arguments("") == {} and parse_arguments(None) == {}
    with pytest.raises(ToolArgumentsError, match="invalid"):
        check_arguments({}, {"type": "object", "required": "n"})  # the tool's own schema is broken


def test_truncation_keeps_whole_characters():
    assert truncate("abc", 10) == ("abc", False)
    text, cut = truncate("€" * 10, 10)  # 3 bytes each: 3 whole characters fit
    assert cut and text.startswith("€€€\n[truncated: 30 bytes, limit 10]")


def run_cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "vllm_mlx.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mcp-cli") / "mcp.json"
    path.write_text(json.dumps(servers(
        box={"command": sys.executable, "args": [str(TOOLBOX)], "blocked_tools": ["crash", "hang"]})))
    return path


def test_cli_lists_tools(config_file):
    out = run_cli("mcp", "tools", "--mcp-config", str(config_file), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    names = {t["function"]["name"] for t in data["tools"]}
    assert "box__read_file" in names and "box__crash" not in names
    assert data["servers"][0]["status"] == "connected"
    text = run_cli("mcp", "tools", "--mcp-config", str(config_file))
    assert "box: connected" in text.stdout and "box__read_file" in text.stdout


def test_cli_calls_a_tool(config_file):
    out = run_cli("mcp", "call", "--mcp-config", str(config_file), "box__read_file", '{"path": "notes.txt"}')
    assert (out.returncode, out.stdout) == (0, "Buy milk and bread.\n"), out.stderr
    bad = run_cli("mcp", "call", "--mcp-config", str(config_file), "box__read_file", '{"file": 1}')
    assert bad.returncode == 1 and "invalid_arguments" in bad.stderr and "'path' is a required" in bad.stderr
    blocked = run_cli("mcp", "call", "--mcp-config", str(config_file), "box__crash")
    assert blocked.returncode == 1 and "not_allowed" in blocked.stderr
    unknown = run_cli("mcp", "call", "--mcp-config", str(config_file), "nobox__x")
    assert unknown.returncode == 2 and "names are SERVER__TOOL" in unknown.stderr


def test_a_server_that_cannot_start_fails_the_listing(tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(servers(gone={"command": "/nonexistent/mcp-server"})))
    out = run_cli("mcp", "tools", "--mcp-config", str(path))
    assert out.returncode == 1 and "gone: failed" in out.stdout and "cannot start" in out.stdout


def test_serve_refuses_a_config_with_a_bad_entry(tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(servers(ok={"command": "x"}, oops={"command": "x", "headers": {}})))
    out = run_cli("serve", "--mcp-config", str(path), "--port", "1")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: ") and "mcpServers.oops" in out.stderr
