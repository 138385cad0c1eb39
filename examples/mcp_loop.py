"""The server-side MCP tool loop: the server connects to the MCP servers of its
--mcp-config, and a request naming one with `{"type": "mcp", "server_label": ...}` makes
the server call its tools and answer with their results, in one request.

    vllm-mlx serve mlx-community/Qwen3-4B-4bit --mcp-config mcp.json
    python examples/mcp_loop.py "What is in notes.txt?" --server-label files [--stream]
"""

import argparse
import json
import os

from openai import OpenAI

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("prompt", nargs="?", default="What is in notes.txt?")
parser.add_argument("--server-label", default="files", help="an MCP server's name in the server's mcp.json")
parser.add_argument("--tool", action="append", default=[], help="allow only this tool (repeatable)")
parser.add_argument("--stream", action="store_true", help="stream: tool-call progress, then the answer")
parser.add_argument("--base-url", default=os.environ.get("VLLM_MLX_BASE_URL", "http://127.0.0.1:8000/v1"))
parser.add_argument("--model", default=os.environ.get("VLLM_MLX_MODEL", "default"))
parser.add_argument("--api-key", default=os.environ.get("VLLM_MLX_API_KEY", "unused"))
parser.add_argument("--max-tokens", type=int, default=512)
args = parser.parse_args()

client = OpenAI(base_url=args.base_url, api_key=args.api_key)
mcp = {"type": "mcp", "server_label": args.server_label}
if args.tool:
    mcp["allowed_tools"] = args.tool
tools = client.get("/mcp/tools", cast_to=dict)["data"]  # GET /v1/mcp/tools: what the MCP servers offer
print("Tools of", args.server_label + ":", [t["tool"] for t in tools if t["server_label"] == args.server_label])
request = dict(model=args.model, messages=[{"role": "user", "content": args.prompt}], tools=[mcp],
               max_tokens=args.max_tokens)

if not args.stream:
    message = client.chat.completions.create(**request).choices[0].message
    for call in message.model_extra.get("mcp_calls", []):
        print(f"MCP call: {call['function']}({call['arguments']}) -> {json.dumps(call.get('output'))}")
    print("Answer:", message.content)
else:
    for chunk in client.chat.completions.create(**request, stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        call = (delta.model_extra or {}).get("mcp_call")
        if call:
            print(f"MCP call {call['status']}: {call['function']}")
        if delta.content:
            print(delta.content, end="", flush=True)
    print()
