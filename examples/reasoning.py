"""Reasoning models (Qwen3, DeepSeek-R1): the server splits the model's thinking from its
answer. The thinking comes in `reasoning` (and `reasoning_content`, the older name).

    vllm-mlx serve mlx-community/Qwen3-0.6B-4bit --reasoning-parser qwen3
    python examples/reasoning.py "What is 17 * 23?" [--stream]
"""

import argparse
import os

from openai import OpenAI

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("prompt", nargs="?", default="What is 17 * 23?")
parser.add_argument("--stream", action="store_true", help="stream the thinking and the answer as they come")
parser.add_argument("--base-url", default=os.environ.get("VLLM_MLX_BASE_URL", "http://127.0.0.1:8000/v1"))
parser.add_argument("--model", default=os.environ.get("VLLM_MLX_MODEL", "default"))
parser.add_argument("--api-key", default=os.environ.get("VLLM_MLX_API_KEY", "unused"))
parser.add_argument("--max-tokens", type=int, default=1024)
args = parser.parse_args()

client = OpenAI(base_url=args.base_url, api_key=args.api_key)
request = dict(model=args.model, messages=[{"role": "user", "content": args.prompt}], max_tokens=args.max_tokens)


def reasoning_of(obj) -> str | None:
    extra = obj.model_extra or {}  # fields beyond OpenAI's schema
    return extra.get("reasoning") or extra.get("reasoning_content")


if not args.stream:
    message = client.chat.completions.create(**request).choices[0].message
    print("Thinking:", reasoning_of(message))
    print("Answer:", message.content)
else:
    section = None
    for chunk in client.chat.completions.create(**request, stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for name, text in (("Thinking", reasoning_of(delta)), ("Answer", delta.content)):
            if text:
                if section != name:
                    print(f"\n{name}: ", end="")
                    section = name
                print(text, end="", flush=True)
    print()
