"""Ask a video-capable vision-language model (Qwen2.5-VL) about a video, with vLLM's
`video_url` content part: a local file (sent inline as a data: URL) or an http(s) URL.

    vllm-mlx serve mlx-community/Qwen2.5-VL-3B-Instruct-4bit
    python examples/video.py clip.mp4 "What happens in this video?"
"""

import argparse
import base64
import mimetypes
import os

from openai import OpenAI

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("video", help="a local video file or an http(s) URL")
parser.add_argument("prompt", nargs="?", default="Describe what happens in this video.")
parser.add_argument("--base-url", default=os.environ.get("VLLM_MLX_BASE_URL", "http://127.0.0.1:8000/v1"))
parser.add_argument("--model", default=os.environ.get("VLLM_MLX_MODEL", "default"))
parser.add_argument("--api-key", default=os.environ.get("VLLM_MLX_API_KEY", "unused"))
parser.add_argument("--max-tokens", type=int, default=256)
args = parser.parse_args()

if args.video.startswith(("http://", "https://", "data:")):
    url = args.video
else:
    mime = mimetypes.guess_type(args.video)[0] or "video/mp4"
    with open(args.video, "rb") as f:
        url = f"data:{mime};base64,{base64.b64encode(f.read()).decode()}"

client = OpenAI(base_url=args.base_url, api_key=args.api_key)
reply = client.chat.completions.create(
    model=args.model,
    messages=[{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": url}},  # vLLM's part for videos (not in OpenAI's API)
        {"type": "text", "text": args.prompt},
    ]}],
    max_tokens=args.max_tokens,
)
print(reply.choices[0].message.content)
print(f"[{reply.usage.prompt_tokens} prompt tokens, video frames included]")
