"""Tool calling: the model asks for a function, this script runs it and sends the
result back, and the model answers with it. The server parses the model's tool-call
format (Hermes/Qwen, Llama 3, Mistral, ...) into OpenAI `tool_calls`.

    vllm-mlx serve mlx-community/Qwen3-0.6B-4bit --enable-auto-tool-choice --tool-call-parser hermes
    python examples/tool_calling.py "What's the weather in Paris?"
"""

import argparse
import json
import os

from openai import OpenAI

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("prompt", nargs="?", default="What's the weather in Paris?")
parser.add_argument("--base-url", default=os.environ.get("VLLM_MLX_BASE_URL", "http://127.0.0.1:8000/v1"))
parser.add_argument("--model", default=os.environ.get("VLLM_MLX_MODEL", "default"))
parser.add_argument("--api-key", default=os.environ.get("VLLM_MLX_API_KEY", "unused"))
parser.add_argument("--max-tokens", type=int, default=512)
args = parser.parse_args()

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]}}}]


def get_weather(city: str, days: int = 1) -> dict:
    return {"city": city, "days": days, "forecast": "sunny", "temperature_c": 21}  # a stand-in for a real API


client = OpenAI(base_url=args.base_url, api_key=args.api_key)
messages = [{"role": "user", "content": args.prompt}]
reply = client.chat.completions.create(model=args.model, messages=messages, tools=TOOLS, tool_choice="auto",
                                       max_tokens=args.max_tokens)
message = reply.choices[0].message
if not message.tool_calls:
    print("No tool call; the model said:", message.content)
    raise SystemExit(0)

messages.append(message.model_dump(exclude_none=True))
for call in message.tool_calls:
    arguments = json.loads(call.function.arguments)
    print(f"Tool call: {call.function.name}({json.dumps(arguments)})")
    result = get_weather(**arguments)
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})

final = client.chat.completions.create(model=args.model, messages=messages, tools=TOOLS,
                                       max_tokens=args.max_tokens)
print("Answer:", final.choices[0].message.content)
