"""``vllm-mlx mcp tools|call`` (check a config before serving) and the ``--mcp-*`` options of
``serve``. The logic lives in ``vllm_mlx.mcp_host``."""

from __future__ import annotations

import json
import sys

import click

_CONFIG = click.option("--mcp-config", "mcp_config", required=True, type=click.Path(dir_okay=False),
                       help="An mcp.json file (Claude Desktop / Cursor format).")


def mcp_serve_options(fn):
    """The MCP options of ``serve``; they reach it as keyword arguments named ``mcp_*``."""
    opts = [
        click.option("--mcp-config", "mcp_config", default=None, type=click.Path(dir_okay=False),
                     help="Connect to the MCP servers in this mcp.json (Claude Desktop / Cursor format): their tools "
                          "are served under /v1/mcp/* and chat requests may use them with "
                          "tools=[{\"type\": \"mcp\", \"server_label\": NAME}] (the server runs the loop)."),
        click.option("--mcp-max-tool-iterations", "mcp_max_tool_iterations", default=10, show_default=True,
                     type=click.IntRange(1, 100), help="Most rounds of MCP tool calls one request may ask for "
                                                       "(max_tool_iterations; a request that names none gets 4)."),
        click.option("--mcp-call-timeout", "mcp_call_timeout", default=60.0, show_default=True,
                     type=click.FloatRange(min=0.1), help="Seconds one MCP tool call may take."),
        click.option("--mcp-total-timeout", "mcp_total_timeout", default=300.0, show_default=True,
                     type=click.FloatRange(min=1), help="Seconds one server-side tool loop may take in all."),
        click.option("--mcp-connect-timeout", "mcp_connect_timeout", default=30.0, show_default=True,
                     type=click.FloatRange(min=0.1), help="Seconds an MCP server gets to start and list its tools "
                                                          "(then it is retried with backoff)."),
        click.option("--mcp-max-result-bytes", "mcp_max_result_bytes", default=32768, show_default=True,
                     type=click.IntRange(256), help="Tool results longer than this are truncated."),
        click.option("--mcp-audit-log", "mcp_audit_log", default=None, type=click.Path(dir_okay=False),
                     help="Also append one JSON line per MCP tool call to this file (never arguments or results)."),
        click.option("--mcp-allowed-urls", "mcp_allowed_urls", multiple=True, metavar="HOST",
                     help="Let Responses requests name their own MCP server_url on this host (HOST, HOST:PORT or "
                          "a URL; repeatable). Default: none (only the servers of --mcp-config)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def mcp_serve_kwargs(options: dict) -> dict:
    """``ServeOptions`` fields from the ``mcp_*`` keyword arguments of ``serve``."""
    from ..mcp_host import HostOptions

    host = HostOptions(connect_timeout=options["mcp_connect_timeout"], call_timeout=options["mcp_call_timeout"],
                       total_timeout=options["mcp_total_timeout"],
                       max_tool_iterations=options["mcp_max_tool_iterations"],
                       default_tool_iterations=min(4, options["mcp_max_tool_iterations"]),
                       max_result_bytes=options["mcp_max_result_bytes"],
                       allowed_urls=tuple(options.get("mcp_allowed_urls") or ()))
    return {"mcp_config": options["mcp_config"], "mcp_options": host, "mcp_audit_log": options["mcp_audit_log"]}


@click.group("mcp")
def mcp() -> None:
    """Check an MCP config: list its servers' tools, call one."""


def _fail(message: str, code: int = 2):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@mcp.command("tools")
@_CONFIG
@click.option("--json", "as_json", is_flag=True, help="Print the OpenAI function tools and server status as JSON.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds each server gets to start and list its tools.")
def tools_cmd(mcp_config, as_json, timeout):
    """Connect to every server in the config and list their tools (as the model sees them)."""
    from ..mcp_host import McpConfigError
    from ..mcp_host.oneshot import list_tools

    try:
        status, tools = list_tools(mcp_config, timeout)
    except McpConfigError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps({"servers": status, "tools": [
            {**t.as_openai(), "server_label": t.server, "tool": t.tool} for t in tools]}, indent=2))
    else:
        for s in status:
            line = f"{s['name']}: {s['status']}, {s['tools']} tools"
            click.echo(line + (f" ({s['last_error']})" if s["last_error"] else ""))
        for t in tools:
            click.echo(f"  {t.name:<40} {t.description.splitlines()[0] if t.description else ''}")
    if any(s["status"] != "connected" for s in status):
        sys.exit(1)


@mcp.command("call")
@_CONFIG
@click.argument("name")
@click.argument("arguments", default="{}")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds the call may take.")
def call_cmd(mcp_config, name, arguments, timeout):
    """Call tool NAME (namespaced: server__tool) with ARGUMENTS (a JSON object); print its result."""
    from ..mcp_host import McpConfigError
    from ..mcp_host.oneshot import call_tool

    try:
        outcome = call_tool(mcp_config, name, arguments, timeout)
    except (McpConfigError, LookupError) as exc:
        _fail(exc.args[0] if isinstance(exc, LookupError) else str(exc))
    if not outcome.ran:
        _fail(f"{outcome.outcome}: {outcome.error}", 1)
    click.echo(outcome.output)
    if outcome.outcome == "tool_error":
        sys.exit(1)
