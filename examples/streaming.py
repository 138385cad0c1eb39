"""Stream a chat completion token by token (server-sent events), with the OpenAI SDK.

    python examples/streaming.py "Tell me a short story."
"""

import argparse
import os

from openai import OpenAI

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("prompt", nargs="?", default="Tell me a short story.")
parser.add_argument("--base-url", default=os.environ.get("VLLM_MLX_BASE_URL", "http://127.0.0.1:8000/v1"))
parser.add_argument("--model", default=os.environ.get("VLLM_MLX_MODEL", "default"))
parser.add_argument("--api-key", default=os.environ.get("VLLM_MLX_API_KEY", "unused"))
parser.add_argument("--max-tokens", type=int, default=256)
args = parser.parse_args()

client = OpenAI(base_url=args.base_url, api_key=args.api_key)
stream = client.chat.completions.create(
    model=args.model,
    messages=[{"role": "user", "content": args.prompt}],
    max_tokens=args.max_tokens,
    stream=True,
    stream_options={"include_usage": True},  # a last chunk carries the token counts
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
    if chunk.usage:
        print(f"\n[{chunk.usage.completion_tokens} tokens]")
