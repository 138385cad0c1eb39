"""Multilingual text to speech with Kokoro: pick a language, the script picks a voice of
that language and tells the server the language. Writes the audio to a file; --play
plays it (afplay on macOS). Text needs the language's G2P package on the server
(docs/guides/audio.md lists them); --phonemes sends phonemes instead.

    python examples/tts_multilingual.py "Hola mundo" --lang es [--play]
    python examples/tts_multilingual.py --list-languages
    python examples/tts_multilingual.py --list-models
"""

import argparse
import os
import shutil
import subprocess
import sys

from openai import OpenAI

# language -> (Kokoro language letter, a voice of it, name)
LANGUAGES = {
    "en": ("a", "af_heart", "English (US)"), "en-gb": ("b", "bf_emma", "English (UK)"),
    "es": ("e", "ef_dora", "Spanish"), "fr": ("f", "ff_siwis", "French"), "hi": ("h", "hf_alpha", "Hindi"),
    "it": ("i", "if_sara", "Italian"), "ja": ("j", "jf_alpha", "Japanese"),
    "pt": ("p", "pf_dora", "Portuguese (Brazil)"), "zh": ("z", "zf_xiaobei", "Chinese (Mandarin)"),
}

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("text", nargs="?", default="Hola mundo")
parser.add_argument("--lang", default="es", choices=sorted(LANGUAGES))
parser.add_argument("--voice", help="override the language's default voice")
parser.add_argument("--format", default="wav", choices=["mp3", "opus", "aac", "flac", "wav", "pcm"])
parser.add_argument("--output", "-o", help="where to write the audio (default: speech_<lang>.<format>)")
parser.add_argument("--play", action="store_true", help="play it (afplay on macOS; elsewhere: just the file)")
parser.add_argument("--phonemes", action="store_true", help="the text is Kokoro phonemes (no G2P package needed)")
parser.add_argument("--list-languages", action="store_true", help="list the languages and their voices")
parser.add_argument("--list-models", action="store_true", help="list the server's text-to-speech models")
parser.add_argument("--base-url", default=os.environ.get("VLLM_MLX_BASE_URL", "http://127.0.0.1:8000/v1"))
parser.add_argument("--model", default=os.environ.get("VLLM_MLX_TTS_MODEL", "kokoro"))
parser.add_argument("--api-key", default=os.environ.get("VLLM_MLX_API_KEY", "unused"))
args = parser.parse_args()

if args.list_languages:
    for code, (letter, voice, name) in LANGUAGES.items():
        print(f"{code:6} {name:22} voice {voice} (Kokoro language '{letter}')")
    sys.exit(0)

client = OpenAI(base_url=args.base_url, api_key=args.api_key)
if args.list_models:
    for model in client.models.list():
        if (model.model_extra or {}).get("kind") == "tts":
            print(model.id)
    sys.exit(0)

letter, voice, name = LANGUAGES[args.lang]
extra = {"language": letter}
if args.phonemes:
    extra["input_type"] = "phonemes"
try:
    audio = client.audio.speech.create(model=args.model, voice=args.voice or voice, input=args.text,
                                       response_format=args.format, extra_body=extra)
except Exception as exc:  # the server's 4xx says what is wrong (e.g. the G2P package to install)
    sys.exit(f"error: {getattr(exc, 'message', exc)}")
output = args.output or f"speech_{args.lang}.{args.format}"
audio.write_to_file(output)
print(f"wrote {output}: {name}, voice {args.voice or voice} ({len(audio.content)} bytes)")
if args.play:
    if sys.platform == "darwin" and shutil.which("afplay"):
        subprocess.run(["afplay", output], check=False)
    else:
        print(f"no player used on {sys.platform}: open {output} with any audio player")
