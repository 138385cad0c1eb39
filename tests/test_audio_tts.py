"""Kokoro text to speech over the real server (the three-model server of conftest), with
the official openai client. Random weights make noise, so tests check formats, headers,
durations, speed, streaming chunking and errors. Most requests send phonemes
(input_type=phonemes); Spanish text goes through the espeak G2P of the audio-espeak extra
(installed by the dev extra), and English text, whose G2P (misaki[en] + spaCy) is not
installed here, is the 400 naming the install."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
from openai import BadRequestError

from vllm_mlx.speech.audio_io import decode_audio

PHONEMES = {"input_type": "phonemes"}
HELLO = "həlˈoʊ."
THREE = "həlˈoʊ. ðɪs ɪz. ə tˈɛst."
MAGIC = {"wav": b"RIFF", "flac": b"fLaC", "opus": b"OggS", "mp3": b"ID3"}


def speak(mc, **kw):
    args = {"model": "kokoro", "voice": "af_heart", "input": HELLO, "response_format": "wav", **kw}
    return mc.audio.speech.create(**args, extra_body=PHONEMES).content


def test_voices_list_with_languages(multi_server):
    body = httpx.get(multi_server.url + "/v1/audio/voices").json()
    assert body["model"] == "kokoro"
    assert {v["id"]: v["language"] for v in body["data"]} == {
        "af_heart": "en-us", "bf_emma": "en-gb", "ef_dora": "es", "ff_siwis": "fr"}


def test_speech_formats_and_durations(mc):
    wav = speak(mc)
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert int.from_bytes(wav[24:28], "little") == 24000  # the WAV header's sample rate
    seconds = len(decode_audio(wav)) / 16000
    assert 0.05 < seconds < 10
    pcm = speak(mc, response_format="pcm")
    assert len(pcm) % 2 == 0 and abs(len(pcm) / 2 / 24000 - seconds) < 0.01  # 24 kHz 16-bit mono
    for fmt in ("flac", "opus", "mp3", "aac"):
        data = speak(mc, response_format=fmt)
        assert data.startswith(MAGIC.get(fmt, b"\xff\xf1")), fmt  # aac: an ADTS frame header
        assert abs(len(decode_audio(data)) / 16000 - seconds) < 0.15, fmt


def test_speed_shortens_speech(mc):
    slow = len(speak(mc, response_format="pcm", speed=0.5))
    fast = len(speak(mc, response_format="pcm", speed=2.0))
    assert fast < slow


def test_streamed_audio_is_one_stream_sent_in_chunks(multi_server):
    body = {"model": "kokoro", "voice": "ef_dora", "input": THREE, "response_format": "wav",
            "stream_format": "audio", **PHONEMES}
    with httpx.stream("POST", multi_server.url + "/v1/audio/speech", json=body, timeout=120) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"] == "audio/wav"
        chunks = list(resp.iter_raw())
    data = b"".join(chunks)
    assert len(chunks) >= 3 and data.count(b"RIFF") == 1  # one header, then each sentence's samples
    pcm = httpx.post(multi_server.url + "/v1/audio/speech", timeout=120,
                     json={**body, "response_format": "pcm", "stream_format": None}).content
    assert len(data) - 44 >= len(pcm) - 2 and len(decode_audio(data)) > 0


def test_sse_speech_events(multi_server):
    body = {"model": "kokoro", "voice": "ff_siwis", "input": THREE, "response_format": "mp3",
            "stream_format": "sse", **PHONEMES}
    with httpx.stream("POST", multi_server.url + "/v1/audio/speech", json=body, timeout=120) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["output_tokens"] > 0
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(events) >= 3 and audio[:3] == b"ID3" and len(decode_audio(audio)) > 0


def test_speech_errors_are_400s(multi_server, mc):
    with pytest.raises(BadRequestError) as exc:
        speak(mc, voice="nobody")
    assert exc.value.body["code"] == "unknown_voice" and "af_heart" in exc.value.body["message"]
    for kw, param in (({"input": "  "}, "input"), ({"input": "a" * 5000}, "input"), ({"speed": 5.0}, "speed"),
                      ({"model": "whisper"}, "model"), ({"model": "llm"}, "model")):
        with pytest.raises(BadRequestError) as exc:
            speak(mc, **kw)
        assert exc.value.body["param"] == param, kw
    bad_format = httpx.post(multi_server.url + "/v1/audio/speech",
                            json={"model": "kokoro", "input": "x", "response_format": "ogg"})
    assert bad_format.status_code == 400 and bad_format.json()["error"]["param"] == "response_format"
    # English and Japanese text need G2P packages that are not installed here: a 400 that says what to install
    with pytest.raises(BadRequestError) as exc:
        mc.audio.speech.create(model="kokoro", voice="af_heart", input="Hello there.")
    assert exc.value.body["code"] == "g2p_unavailable" and "misaki[en]" in exc.value.body["message"]
    with pytest.raises(BadRequestError) as exc:
        mc.audio.speech.create(model="kokoro", voice="ef_dora", input="こんにちは。", extra_body={"language": "j"})
    assert exc.value.body["code"] == "g2p_unavailable" and "pyopenjtalk" in exc.value.body["message"]
    with pytest.raises(BadRequestError):
        mc.audio.transcriptions.create(model="kokoro", file=("a.wav", speak(mc)))
    # everything still serves
    assert httpx.get(multi_server.url + "/health").json()["status"] == "ok"
    assert speak(mc)[:4] == b"RIFF"


def test_speech_round_trips_through_whisper(mc):
    """The voice assistant loop's two audio ends on one server: speech out, transcription in."""
    wav = speak(mc, input=THREE)
    r = mc.audio.transcriptions.create(model="whisper", file=("speech.wav", wav), response_format="verbose_json",
                                       language="en")
    assert abs(r.duration - len(decode_audio(wav)) / 16000) < 0.01


def test_spanish_text_to_speech_offline(multi_server, mc):
    """Spanish text through the bundled espeak-ng G2P, end to end, in every format."""
    text = "Hola, ¿qué tal? Esto es una prueba. Adiós."
    wav = mc.audio.speech.create(model="kokoro", voice="ef_dora", input=text, response_format="wav").content
    assert wav[:4] == b"RIFF"
    seconds = len(decode_audio(wav)) / 16000
    assert 0.3 < seconds < 60
    for fmt in ("mp3", "flac", "opus"):
        data = mc.audio.speech.create(model="kokoro", voice="ef_dora", input=text, response_format=fmt).content
        assert data.startswith(MAGIC[fmt]) and abs(len(decode_audio(data)) / 16000 - seconds) < 0.15, fmt
    body = {"model": "kokoro", "voice": "ef_dora", "input": text, "response_format": "pcm", "stream_format": "audio"}
    with httpx.stream("POST", multi_server.url + "/v1/audio/speech", json=body, timeout=120) as resp:
        assert resp.status_code == 200
        chunks = list(resp.iter_raw())
    assert len(chunks) >= 3 and abs(len(b"".join(chunks)) / 2 / 24000 - seconds) < 0.05  # three sentences
