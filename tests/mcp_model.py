"""A tiny model trained (like scripted_model.py) to drive MCP tool loops: it calls the
toolbox's tools under their namespaced names, reads the tool results the loop feeds back,
and answers. The prompts are rendered from the toolbox's real tool definitions, converted
by the MCP host's own code, so they match what the server builds token for token."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

TOOLBOX = Path(__file__).parent / "mcp_servers" / "toolbox.py"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
LOOP_FILE = "loop.txt"


def toolbox_tools() -> dict:
    """The toolbox's tools (mcp ``Tool`` objects) by name, listed over stdio as the server lists them."""
    import sys

    from vllm_mlx.mcp_host import McpHost, parse_config

    async def listing():
        host = McpHost(parse_config({"mcpServers": {"t": {"command": sys.executable, "args": [str(TOOLBOX)]}}}))
        host.start()
        try:
            await host.wait_ready()
            return dict(host.servers["t"].tools)
        finally:
            await host.stop()

    if not _TOOLS:
        _TOOLS.update(asyncio.run(listing()))
    assert _TOOLS, "the toolbox did not start"
    return _TOOLS


_TOOLS: dict = {}


def function_tool(server: str, tool: str) -> dict:
    from vllm_mlx.mcp_host.tools import HostedTool, function_name

    return HostedTool.of(server, toolbox_tools()[tool], function_name(server, tool)).as_openai()


def _call(name: str, arguments: dict) -> str:
    return '<tool_call>\n{"name": "%s", "arguments": %s}\n</tool_call>' % (name, json.dumps(arguments))


def _after_call(user: str, name: str, arguments: dict, result: str) -> list[dict]:
    """The conversation as the loop renders it after one call: the assistant turn with the call, the result."""
    from vllm_mlx.server.chat_template import to_template_messages
    from vllm_mlx.server.schemas.chat import ChatMessage, FunctionCall, ToolCallIn

    msgs = [ChatMessage(role="user", content=user),
            ChatMessage(role="assistant", content=None, tool_calls=[
                ToolCallIn(id="call_0", function=FunctionCall(name=name, arguments=json.dumps(arguments)))]),
            ChatMessage(role="tool", tool_call_id="call_0", content=result)]
    return to_template_messages(msgs)


def scripts() -> list[dict]:
    files = [function_tool("files", "read_file")]
    web = [function_tool("web", "read_file")]
    notes, todo = {"path": "notes.txt"}, {"path": "todo.txt"}
    loop = {"path": LOOP_FILE}
    user = lambda text: [{"role": "user", "content": text}]  # noqa: E731
    return [
        {"name": "read", "messages": user("What is in notes.txt?"), "tools": files,
         "reply": _call("files__read_file", notes)},
        {"name": "read_answer", "tools": files, "reply": "notes.txt says: Buy milk and bread.",
         "messages": _after_call("What is in notes.txt?", "files__read_file", notes, "Buy milk and bread.")},
        {"name": "web", "messages": user("What is in todo.txt?"), "tools": web,
         "reply": _call("web__read_file", todo)},
        {"name": "web_answer", "tools": web, "reply": "todo.txt says: Call Alice at noon.",
         "messages": _after_call("What is in todo.txt?", "web__read_file", todo, "Call Alice at noon.")},
        {"name": "loop", "messages": user("Keep reading loop.txt."), "tools": files,
         "reply": _call("files__read_file", loop)},
        {"name": "loop_again", "tools": files, "reply": _call("files__read_file", loop),
         "messages": _after_call("Keep reading loop.txt.", "files__read_file", loop, "Read loop.txt again.")},
        {"name": "bad_args", "messages": user("Open the notes file."), "tools": files,
         "reply": _call("files__read_file", {"file": "notes.txt"})},
        {"name": "mixed", "messages": user("Weather in Paris?"), "tools": files + [WEATHER],
         "reply": _call("get_weather", {"city": "Paris"})},
    ]


def build_mcp_model(out: Path) -> Path:
    from mlx_lm.utils import load_tokenizer

    from vllm_mlx.demo.tokenizer import EOS_TOKEN, PAD_TOKEN, train_tokenizer, write_tokenizer
    from vllm_mlx.demo.train import encode_scripts, model_config, train_model, verify_model_dir, write_model

    out.mkdir(parents=True, exist_ok=True)
    script_list = scripts()
    tok = train_tokenizer(vocab_size=512, scripts=script_list)
    write_tokenizer(tok, out)
    config = model_config(tok.get_vocab_size(), tok.token_to_id(EOS_TOKEN), tok.token_to_id(PAD_TOKEN))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    examples = encode_scripts(load_tokenizer(out), script_list)
    model, _ = train_model(config, examples, log=lambda *_: None)
    write_model(model, config, out)
    verify_model_dir(out, script_list)
    return out
