"""Several models in one server (an LLM and Whisper), and speech to text over the real
server with the official openai client. The Whisper is random-weight, so tests check
formats, durations, timestamps and routing, not words."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from openai import BadRequestError, NotFoundError

from conftest import MAX_AUDIO
from speech_factory import tone_in, tone_wav


@pytest.fixture(scope="session")
def tone65():
    return tone_wav(65.0)


def test_models_and_health_list_every_model(multi_server, mc):
    ids = [m.id for m in mc.models.list().data]
    assert ids == ["whisper", "llm", "kokoro"]
    kinds = {m["id"]: m["kind"] for m in httpx.get(multi_server.url + "/v1/models").json()["data"]}
    assert kinds == {"whisper": "stt", "llm": "llm", "kokoro": "tts"}
    health = httpx.get(multi_server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "whisper" and health["kind"] == "stt"
    assert [(m["name"], m["kind"], m["state"]) for m in health["models"]] == [
        ("whisper", "stt", "running"), ("llm", "llm", "running"), ("kokoro", "tts", "running")]
    assert mc.models.retrieve("default").id == "whisper"


def test_requests_route_by_model_and_wrong_kind_is_400(multi_server, mc):
    r = mc.chat.completions.create(messages=[{"role": "user", "content": "hi"}], model="llm", max_tokens=3)
    assert r.model == "llm" and r.usage.completion_tokens <= 3
    # no model: the first model of the endpoint's kind, although the first served is Whisper
    r = httpx.post(multi_server.url + "/v1/chat/completions",
                   json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert r.status_code == 200 and r.json()["model"] == "llm"
    # "default" is the first model served: Whisper, so a chat for it is the wrong kind
    r = httpx.post(multi_server.url + "/v1/chat/completions",
                   json={"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert r.status_code == 400 and r.json()["error"]["code"] == "wrong_model_kind"
    with pytest.raises(BadRequestError) as exc:
        mc.chat.completions.create(model="whisper", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert "stt model" in exc.value.body["message"] and exc.value.body["code"] == "wrong_model_kind"
    with pytest.raises(BadRequestError) as exc:
        mc.audio.transcriptions.create(model="llm", file=("a.wav", tone_wav(1.0)))
    assert "llm model" in exc.value.body["message"] and exc.value.body["param"] == "model"
    with pytest.raises(NotFoundError):
        mc.audio.transcriptions.create(model="nope", file=("a.wav", tone_wav(1.0)))


def test_transcription_json_and_text(mc):
    r = mc.audio.transcriptions.create(model="whisper", file=("tone.wav", tone_wav(2.0)), language="en")
    assert isinstance(r.text, str)
    text = mc.audio.transcriptions.create(model="whisper", file=("tone.wav", tone_wav(2.0)), language="en",
                                          response_format="text")
    assert isinstance(text, str)


def test_long_audio_windows_have_absolute_ordered_timestamps(mc, tone65):
    r = mc.audio.transcriptions.create(model="whisper", file=("long.wav", tone65), response_format="verbose_json",
                                       language="en", timestamp_granularities=["segment"])
    assert r.task == "transcribe" and r.language == "english" and abs(r.duration - 65.0) < 0.01
    starts = [s.start for s in r.segments]
    assert r.segments and starts == sorted(starts)
    assert all(s.start <= s.end <= 65.0 for s in r.segments)
    assert [s.id for s in r.segments] == list(range(len(r.segments)))
    # three 30 s windows: segments of the later windows start at their window's offset
    assert any(s.start >= 60.0 for s in r.segments) and any(30.0 <= s.start < 60.0 for s in r.segments)


def test_word_timestamps(mc):
    r = mc.audio.transcriptions.create(model="whisper", file=("t.wav", tone_wav(35.0)), language="en",
                                       response_format="verbose_json", timestamp_granularities=["word"])
    starts = [w.start for w in r.words]
    assert r.words and starts == sorted(starts) and all(0 <= w.start <= w.end <= 35.0 for w in r.words)
    assert any(w.start >= 30.0 for w in r.words)  # the second window's words, at their absolute times


def test_srt_and_vtt(mc):
    srt = mc.audio.transcriptions.create(model="whisper", file=("t.wav", tone_wav(3.0)), response_format="srt",
                                         language="en")
    vtt = mc.audio.transcriptions.create(model="whisper", file=("t.wav", tone_wav(3.0)), response_format="vtt",
                                         language="en")
    stamp = r"\d\d:\d\d:\d\d[,.]\d\d\d --> \d\d:\d\d:\d\d[,.]\d\d\d"
    assert re.search(r"^1\n" + stamp, srt, re.M) and "," in srt.split("\n")[1]
    assert vtt.startswith("WEBVTT\n\n") and re.search(stamp, vtt) and "." in vtt.split("\n")[2]


@pytest.mark.parametrize("name,container,codec", [
    ("a.mp3", "mp3", "libmp3lame"), ("a.ogg", "ogg", "libopus"), ("a.flac", "flac", "flac"),
    ("a.m4a", "mp4", "aac"), ("a.webm", "webm", "libopus")])
def test_common_uploads_decode(mc, name, container, codec):
    r = mc.audio.transcriptions.create(model="whisper", file=(name, tone_in(container, codec)),
                                       response_format="verbose_json", language="en")
    assert 1.95 < r.duration < 2.1, (name, r.duration)


def test_translation(multi_server):
    # through HTTP: the openai SDK marks translations.create deprecated
    r = httpx.post(multi_server.url + "/v1/audio/translations", timeout=120,
                   data={"model": "whisper", "response_format": "verbose_json"},
                   files={"file": ("t.wav", tone_wav(2.0), "audio/wav")})
    assert r.status_code == 200 and r.json()["task"] == "translate" and r.json()["duration"] == 2.0


def test_streaming_transcription_events(multi_server, tone65):
    with httpx.stream("POST", multi_server.url + "/v1/audio/transcriptions", timeout=120,
                      data={"model": "whisper", "stream": "true", "language": "en"},
                      files={"file": ("long.wav", tone65, "audio/wav")}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) <= {"transcript.text.delta"}
    assert "".join(e["delta"] for e in events[:-1]) == events[-1]["text"]


def test_streaming_through_the_sdk(mc):
    stream = mc.audio.transcriptions.create(model="whisper", file=("t.wav", tone_wav(2.0)), stream=True,
                                            language="en")
    events = list(stream)
    assert events[-1].type == "transcript.text.done"


def test_bad_audio_input(multi_server, mc):
    for data in (b"", b"not audio at all" * 50):
        with pytest.raises(BadRequestError) as exc:
            mc.audio.transcriptions.create(model="whisper", file=("x.wav", data))
        assert exc.value.body["param"] == "file"
    big = httpx.post(multi_server.url + "/v1/audio/transcriptions", data={"model": "whisper"},
                     files={"file": ("big.wav", b"\0" * (MAX_AUDIO + 1), "audio/wav")})
    assert big.status_code == 413 and big.json()["error"]["code"] == "file_too_large"
    missing = httpx.post(multi_server.url + "/v1/audio/transcriptions", data={"model": "whisper"},
                         files={"other": ("x", b"1")})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
    for field, value in (("response_format", "mp4"), ("temperature", "7"), ("language", "klingon")):
        r = httpx.post(multi_server.url + "/v1/audio/transcriptions", data={"model": "whisper", field: value},
                       files={"file": ("t.wav", tone_wav(0.5), "audio/wav")})
        assert r.status_code == 400 and r.json()["error"]["param"] == field, (field, r.text)
    json_body = httpx.post(multi_server.url + "/v1/audio/transcriptions", json={"model": "whisper"})
    assert json_body.status_code == 400
    # the server still serves both models
    assert httpx.get(multi_server.url + "/health").json()["status"] == "ok"
    assert mc.audio.transcriptions.create(model="whisper", file=("t.wav", tone_wav(0.5)), language="en")


def test_a_short_transcription_is_not_held_up_by_a_long_one(multi_server, mc):
    """The speech engine takes one 30 s window of each waiting request in turn: a 1 s file sent while a
    240 s one (eight windows, Ogg/Opus to stay under the upload limit) runs is answered before the long
    one ends (first come, first served would answer it after)."""
    import threading
    import time

    long_audio = tone_in("ogg", "libopus", seconds=240.0)
    finished, started = {}, threading.Event()

    def long_request():
        with httpx.stream("POST", multi_server.url + "/v1/audio/transcriptions", timeout=300,
                          data={"model": "whisper", "stream": "true", "language": "en"},
                          files={"file": ("long.ogg", long_audio, "audio/ogg")}) as resp:
            for line in resp.iter_lines():
                started.set()  # a window is done: the long request is in the engine, with windows to go
                if "transcript.text.done" in line:
                    finished["long"] = time.monotonic()
        started.set()

    worker = threading.Thread(target=long_request)
    worker.start()
    started.wait(120)
    mc.audio.transcriptions.create(model="whisper", file=("short.wav", tone_wav(1.0)), language="en")
    finished["short"] = time.monotonic()
    worker.join(300)
    assert finished["short"] < finished["long"]
