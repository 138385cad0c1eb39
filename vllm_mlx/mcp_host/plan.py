"""What a chat request with ``{"type": "mcp"}`` tools asks for, checked: the MCP entries
expanded into function tools (configured servers only), the iteration budget and deadline."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec

from ..server.errors import APIError, bad_request
from ..server.sampling import resolve_max_tokens, to_sampling_params
from ..server.schemas.chat import ChatCompletionRequest
from .host import McpHost
from .tools import HostedTool


@dataclass
class LoopPlan:
    request: ChatCompletionRequest  # the client's request with the MCP entries expanded into function tools
    hosted: dict[str, HostedTool]  # function name -> MCP tool, for this request's MCP tools only
    iterations: int
    deadline: float


async def plan_loop(state: Any, req: ChatCompletionRequest) -> LoopPlan:
    host: McpHost | None = state.mcp
    if host is None:
        raise bad_request("This server has no MCP servers: start it with --mcp-config FILE to use "
                          "{'type': 'mcp'} tools", param="tools", code="mcp_not_configured")
    if req.n != 1:
        raise bad_request("n must be 1 with MCP tools", param="n")
    if req.tool_choice not in (None, "auto"):
        raise bad_request("With MCP tools, tool_choice must be 'auto' (the model decides when to call them)",
                          param="tool_choice")
    if req.response_format and req.response_format.get("type", "text") != "text":
        raise bad_request("response_format cannot be combined with MCP tools", param="response_format")
    if req.logprobs:
        raise bad_request("logprobs are not available with MCP tools", param="logprobs")
    if req.continue_final_message:
        raise bad_request("continue_final_message cannot be combined with MCP tools", param="messages")
    tools, hosted, client_names = [], {}, set()
    for i, entry in enumerate(req.tools or []):
        if not isinstance(entry, dict) or entry.get("type") != "mcp":
            tools.append(entry)
            fn = entry.get("function") if isinstance(entry, dict) else None
            client_names.add(fn.get("name") if isinstance(fn, dict) else None)
            continue
        for hosted_tool in await _expand(host, entry, i):
            if hosted_tool.name not in hosted:
                hosted[hosted_tool.name] = hosted_tool
                tools.append(hosted_tool.as_openai())
    clash = sorted(n for n in client_names & set(hosted) if n)
    if clash:
        raise bad_request(f"function tool {clash[0]!r} has the name of an MCP tool; rename it", param="tools")
    if not hosted:
        raise bad_request("The MCP tools of this request offer no tool that may be called", param="tools")
    opts = host.options
    wanted = req.max_tool_iterations
    if wanted is not None and wanted < 0:
        raise bad_request("max_tool_iterations must be >= 0", param="max_tool_iterations")
    iterations = min(opts.max_tool_iterations, opts.default_tool_iterations if wanted is None else wanted)
    plain = msgspec.structs.replace(req, tools=tools, tool_choice=None)
    return LoopPlan(request=plain, hosted=hosted, iterations=iterations,
                    deadline=time.monotonic() + opts.total_timeout)


async def _expand(host: McpHost, entry: dict, i: int) -> list[HostedTool]:
    where = f"tools[{i}]"
    for key in ("server_url", "connector_id", "authorization", "headers"):
        if key in entry:
            raise bad_request(f"{where}.{key}: this server connects only to the MCP servers in its config "
                              "(--mcp-config); name one with server_label", param="tools")
    label = entry.get("server_label")
    if not isinstance(label, str) or label not in host.servers:
        raise bad_request(f"{where}.server_label {label!r} is not a configured MCP server; configured: "
                          f"{', '.join(sorted(host.servers)) or '(none)'}", param="tools")
    approval = entry.get("require_approval", "never")
    if approval not in ("never", None):
        raise bad_request(f"{where}.require_approval: only 'never' is supported (the server runs the calls)",
                          param="tools")
    allowed = entry.get("allowed_tools")
    if isinstance(allowed, dict):  # OpenAI's filter object form
        allowed = allowed.get("tool_names")
    if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed)):
        raise bad_request(f"{where}.allowed_tools must be a list of tool names", param="tools")
    conn = host.servers[label]
    await host.wait_ready([label])
    if conn.status != "connected":
        raise APIError(424, f"MCP server {label!r} is not connected ({conn.status}"
                            f"{': ' + conn.last_error if conn.last_error else ''}); it is retried in the background",
                       param="tools", code="mcp_server_unavailable")
    usable = host.tools(label)
    if allowed is None:
        return usable
    by_tool = {t.tool: t for t in usable}
    missing = [a for a in allowed if a not in by_tool]
    if missing:
        raise bad_request(f"{where}.allowed_tools: MCP server {label!r} offers no usable tool named "
                          f"{', '.join(map(repr, missing))}; usable: {', '.join(sorted(by_tool)) or '(none)'}",
                          param="tools")
    return [by_tool[a] for a in allowed]


async def turn_request(state: Any, req: ChatCompletionRequest) -> Any:
    """One turn's ``pipeline.ChatRequest``, its images (a vision model) fetched and processed."""
    from ..server.adapters.chat import to_chat_request
    from ..server.pipeline import load_media, reads_images

    chat_req = to_chat_request(req, vision=reads_images(state))
    await load_media(state, chat_req)
    return chat_req


async def first_turn(state: Any, plan: LoopPlan) -> Any:
    """The first turn's ``ChatRequest``, after every check a turn makes (so a bad request is a 400
    before a stream starts)."""
    from ..server.pipeline import make_parsers, render_prompt
    from ..server.structured import plan_output

    req = plan.request
    chat_req = await turn_request(state, req)
    prompt = render_prompt(state, chat_req)
    requested = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    max_tokens = resolve_max_tokens(requested, len(prompt), state.settings.max_model_len, default=None)
    to_sampling_params(req, max_tokens=max_tokens, logprobs=None, vocab_size=state.engine.engine.vocab_size,
                       defaults=state.settings.sampling_defaults)
    make_parsers(state, chat_req, prompt, plan_output(chat_req))  # 400 when the server reads no tool calls
    return chat_req
