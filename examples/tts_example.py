"""Text to speech with a model served by vllm-mlx (Kokoro, Chatterbox, VibeVoice, VoxCPM),
through OpenAI's audio API. Writes the audio to a file; --play plays it (afplay on macOS).

    vllm-mlx serve mlx-community/Kokoro-82M-bf16 --served-model-name kokoro
    python examples/tts_example.py "Hello, how are you?" [--play]
    python examples/tts_example.py --list-models
    python examples/tts_example.py "Hello" --model chatterbox --voice default --option exaggeration=0.7
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

from openai import OpenAI

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("text", nargs="?", default="Hello, how are you?")
parser.add_argument("--voice", default=os.environ.get("VLLM_MLX_VOICE", "af_heart"),
                    help="a voice of the model (GET /v1/audio/voices lists them)")
parser.add_argument("--speed", type=float, default=1.0)
parser.add_argument("--format", default="wav", choices=["mp3", "opus", "aac", "flac", "wav", "pcm"])
parser.add_argument("--output", "-o", help="where to write the audio (default: speech.<format>)")
parser.add_argument("--play", action="store_true", help="play it (afplay on macOS; elsewhere: just the file)")
parser.add_argument("--phonemes", action="store_true", help="Kokoro: the text is phonemes (no G2P package needed)")
parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="a model-specific option, sent as an extra field (JSON value), e.g. exaggeration=0.7")
parser.add_argument("--list-models", action="store_true", help="list the server's text-to-speech models")
parser.add_argument("--base-url", default=os.environ.get("VLLM_MLX_BASE_URL", "http://127.0.0.1:8000/v1"))
parser.add_argument("--model", default=os.environ.get("VLLM_MLX_TTS_MODEL", "kokoro"))
parser.add_argument("--api-key", default=os.environ.get("VLLM_MLX_API_KEY", "unused"))
args = parser.parse_args()

client = OpenAI(base_url=args.base_url, api_key=args.api_key)
if args.list_models:
    for model in client.models.list():
        if (model.model_extra or {}).get("kind") == "tts":
            voices = client.get("/audio/voices", cast_to=dict, options={"params": {"model": model.id}})
            print(f"{model.id}: voices {', '.join(v['id'] for v in voices['data'])}")
    sys.exit(0)

extra = {"input_type": "phonemes"} if args.phonemes else {}
for item in args.option:
    name, _, value = item.partition("=")
    try:
        extra[name] = json.loads(value)
    except json.JSONDecodeError:
        extra[name] = value
try:
    audio = client.audio.speech.create(model=args.model, voice=args.voice, input=args.text, speed=args.speed,
                                       response_format=args.format, extra_body=extra or None)
except Exception as exc:  # the server's 4xx says what is wrong (an unknown voice, a missing G2P package, ...)
    sys.exit(f"error: {getattr(exc, 'message', exc)}")
output = args.output or f"speech.{args.format}"
audio.write_to_file(output)
print(f"wrote {output} ({len(audio.content)} bytes)")
if args.play:
    if sys.platform == "darwin" and shutil.which("afplay"):
        subprocess.run(["afplay", output], check=False)
    else:
        print(f"no player used on {sys.platform}: open {output} with any audio player")
