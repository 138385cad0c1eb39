"""One chat completion against a running vllm-mlx server, with the OpenAI SDK.

    vllm-mlx serve mlx-community/Qwen3-0.6B-4bit
    python examples/chat.py "Write a haiku about the sea."
"""

import argparse
import os

from openai import OpenAI

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("prompt", nargs="?", default="Hello! Who are you?")
parser.add_argument("--base-url", default=os.environ.get("VLLM_MLX_BASE_URL", "http://127.0.0.1:8000/v1"))
parser.add_argument("--model", default=os.environ.get("VLLM_MLX_MODEL", "default"))
parser.add_argument("--api-key", default=os.environ.get("VLLM_MLX_API_KEY", "unused"))
parser.add_argument("--max-tokens", type=int, default=256)
args = parser.parse_args()

client = OpenAI(base_url=args.base_url, api_key=args.api_key)
reply = client.chat.completions.create(
    model=args.model,
    messages=[{"role": "user", "content": args.prompt}],
    max_tokens=args.max_tokens,
)
print(reply.choices[0].message.content)
print(f"[{reply.usage.prompt_tokens} prompt + {reply.usage.completion_tokens} completion tokens, "
      f"finish_reason={reply.choices[0].finish_reason}]")
