"""Ask a vision-language model (Gemma 3, Qwen2.5-VL) about an image: a local file (sent
inline as a data: URL) or an http(s) URL.

    vllm-mlx serve mlx-community/gemma-3-4b-it-4bit
    python examples/image.py photo.jpg "What is in this picture?"
"""

import argparse
import base64
import mimetypes
import os

from openai import OpenAI

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("image", help="a local image file or an http(s) URL")
parser.add_argument("prompt", nargs="?", default="Describe this image in one sentence.")
parser.add_argument("--base-url", default=os.environ.get("VLLM_MLX_BASE_URL", "http://127.0.0.1:8000/v1"))
parser.add_argument("--model", default=os.environ.get("VLLM_MLX_MODEL", "default"))
parser.add_argument("--api-key", default=os.environ.get("VLLM_MLX_API_KEY", "unused"))
parser.add_argument("--max-tokens", type=int, default=256)
args = parser.parse_args()

if args.image.startswith(("http://", "https://", "data:")):
    url = args.image
else:
    mime = mimetypes.guess_type(args.image)[0] or "image/png"
    with open(args.image, "rb") as f:
        url = f"data:{mime};base64,{base64.b64encode(f.read()).decode()}"

client = OpenAI(base_url=args.base_url, api_key=args.api_key)
reply = client.chat.completions.create(
    model=args.model,
    messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": args.prompt},
    ]}],
    max_tokens=args.max_tokens,
)
print(reply.choices[0].message.content)
print(f"[{reply.usage.prompt_tokens} prompt tokens, image included]")
