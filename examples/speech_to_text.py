"""Transcribe (or translate to English) an audio file with a Whisper model served by
vllm-mlx, through OpenAI's audio API.

    vllm-mlx serve mlx-community/whisper-large-v3-turbo
    python examples/speech_to_text.py talk.m4a [--language en] [--translate] [--timestamps]
"""

import argparse
import os

from openai import OpenAI

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("audio", help="an audio file: wav, mp3, m4a, ogg, webm, flac, ...")
parser.add_argument("--language", help="ISO-639-1 code; detected when left out")
parser.add_argument("--translate", action="store_true", help="translate into English instead")
parser.add_argument("--timestamps", action="store_true", help="print segments with their times")
parser.add_argument("--base-url", default=os.environ.get("VLLM_MLX_BASE_URL", "http://127.0.0.1:8000/v1"))
parser.add_argument("--model", default=os.environ.get("VLLM_MLX_STT_MODEL", "whisper"))
parser.add_argument("--api-key", default=os.environ.get("VLLM_MLX_API_KEY", "unused"))
args = parser.parse_args()

client = OpenAI(base_url=args.base_url, api_key=args.api_key)
with open(args.audio, "rb") as f:
    if args.translate:
        result = client.audio.translations.create(model=args.model, file=f, response_format="verbose_json")
    else:
        kw = {"language": args.language} if args.language else {}
        result = client.audio.transcriptions.create(model=args.model, file=f, response_format="verbose_json", **kw)
print(f"language: {result.language}, duration: {result.duration:.2f} s")
if args.timestamps:
    for seg in result.segments or []:
        print(f"[{seg.start:7.2f} - {seg.end:7.2f}] {seg.text.strip()}")
print("text:", result.text)
