"""The speech families loaded by the generic mlx-audio loaders (TTS: Chatterbox, VibeVoice,
VoxCPM; STT: Moonshine), each a random-weight folder made from mlx-audio's own classes,
behind one real server and the official openai client: /v1/audio/speech end to end, model
options through extra_body, voice cloning from a base64 clip and from an uploaded voice,
transcription, and the 400s."""

from __future__ import annotations

import base64
import io
import wave

import httpx
import numpy as np
import pytest
from openai import BadRequestError, OpenAI

from vllm_mlx.speech.audio_io import decode_audio


def clip_wav(seconds: float = 0.5, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 180 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


@pytest.fixture(scope="session")
def families_server(tmp_path_factory):
    from conftest import _start
    from mlx_audio_families import build_chatterbox, build_moonshine, build_vibevoice, build_voxcpm

    root = tmp_path_factory.mktemp("tts-families")
    dirs = [build_chatterbox(root / "chatterbox"), build_vibevoice(root / "vibevoice"), build_voxcpm(root / "voxcpm"),
            build_moonshine(root / "moonshine")]
    args = [str(d) for d in dirs]
    for name in ("chatterbox", "vibevoice", "voxcpm", "moonshine"):
        args += ["--served-model-name", name]
    srv = _start(tmp_path_factory, "tts-families", args)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def fc(families_server):
    return OpenAI(base_url=families_server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def wav_samples(data: bytes) -> np.ndarray:
    assert data[:4] == b"RIFF"
    return decode_audio(data, 24000)


def test_models_are_tts_with_their_loader(families_server):
    models = {m["id"]: m for m in httpx.get(families_server.url + "/v1/models").json()["data"]}
    assert {models[n]["kind"] for n in ("chatterbox", "vibevoice", "voxcpm")} == {"tts"}
    assert models["moonshine"]["kind"] == "stt"
    voices = httpx.get(families_server.url + "/v1/audio/voices", params={"model": "vibevoice"}).json()
    assert [v["id"] for v in voices["data"]] == ["default", "alice"]


def test_vibevoice_speaks_with_a_voice_cache_and_streams(fc, families_server):
    data = fc.audio.speech.create(model="vibevoice", voice="alice", input="Hello there.", response_format="wav",
                                  extra_body={"max_tokens": 4, "ddpm_steps": 2}).content
    assert wav_samples(data).size > 0
    with httpx.stream("POST", families_server.url + "/v1/audio/speech", timeout=300, json={
            "model": "vibevoice", "input": "Hi.", "response_format": "pcm", "stream_format": "audio",
            "max_tokens": 3}) as r:
        assert r.status_code == 200
        assert len(b"".join(r.iter_bytes())) > 0


def test_voxcpm_speaks_and_clones_with_a_transcript(fc):
    data = fc.audio.speech.create(model="voxcpm", voice="default", input="Hello.", response_format="wav",
                                  extra_body={"max_tokens": 4, "inference_timesteps": 2}).content
    assert wav_samples(data).size > 0
    clip = base64.b64encode(clip_wav(0.3, 16000)).decode()
    data = fc.audio.speech.create(model="voxcpm", voice="default", input="Hello.", response_format="wav",
                                  extra_body={"max_tokens": 4, "inference_timesteps": 2, "ref_audio": clip,
                                              "ref_text": "A tone."}).content
    assert wav_samples(data).size > 0
    with pytest.raises(BadRequestError) as err:  # VoxCPM clones only with the clip's transcript
        fc.audio.speech.create(model="voxcpm", voice="default", input="Hello.",
                               extra_body={"ref_audio": clip})
    assert err.value.body["code"] == "ref_text_required"


def test_chatterbox_default_voice_and_cloning(fc, families_server):
    data = fc.audio.speech.create(model="chatterbox", voice="default", input="Hi.", response_format="wav",
                                  extra_body={"max_tokens": 4, "exaggeration": 0.3}).content
    assert wav_samples(data).size > 0
    # an uploaded voice, then used by name
    r = httpx.post(families_server.url + "/v1/audio/voices", data={"model": "chatterbox", "name": "me"},
                   files={"file": ("me.wav", clip_wav(), "audio/wav")}, timeout=60)
    assert r.status_code == 201, r.text
    assert "me" in [v["id"] for v in httpx.get(families_server.url + "/v1/audio/voices",
                                                params={"model": "chatterbox"}).json()["data"]]
    data = fc.audio.speech.create(model="chatterbox", voice="me", input="Hi.", response_format="wav",
                                  extra_body={"max_tokens": 4}).content
    assert wav_samples(data).size > 0


def test_family_errors_are_400s(fc, families_server):
    cases = [
        ({"model": "chatterbox", "voice": "default", "extra_body": {"not_an_option": 1}}, "unknown_option"),
        ({"model": "chatterbox", "voice": "default", "extra_body": {"temperature": "hot"}}, "invalid_option"),
        ({"model": "chatterbox", "voice": "nobody"}, "unknown_voice"),
        ({"model": "vibevoice", "voice": "alice", "extra_body": {"ref_audio": base64.b64encode(clip_wav()).decode()}},
         "cloning_unsupported"),
        ({"model": "voxcpm", "voice": "default", "speed": 2.0}, None),
        ({"model": "voxcpm", "voice": "default", "extra_body": {"input_type": "phonemes"}}, None),
        ({"model": "chatterbox", "voice": "default", "extra_body": {"ref_audio": "%%%"}}, None),
        ({"model": "chatterbox", "voice": "default", "extra_body": {"ref_audio": base64.b64encode(b"no").decode()}},
         None),
    ]
    for kw, code in cases:
        with pytest.raises(BadRequestError) as err:
            fc.audio.speech.create(input="Hi.", **kw)
        assert err.value.status_code == 400
        if code:
            assert err.value.body["code"] == code, err.value.body
    r = httpx.post(families_server.url + "/v1/audio/voices", data={"model": "vibevoice", "name": "x"},
                   files={"file": ("x.wav", clip_wav(), "audio/wav")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "cloning_unsupported"
    r = httpx.post(families_server.url + "/v1/audio/voices", data={"model": "chatterbox", "name": "a b"},
                   files={"file": ("x.wav", clip_wav(), "audio/wav")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "name"


def test_moonshine_transcribes(fc, tmp_path):
    from speech_factory import tone_wav

    (tmp_path / "tone.wav").write_bytes(tone_wav(1.0))
    with open(tmp_path / "tone.wav", "rb") as f:
        out = fc.audio.transcriptions.create(model="moonshine", file=f, response_format="verbose_json")
    assert isinstance(out.text, str) and out.duration == 1.0
    with open(tmp_path / "tone.wav", "rb") as f:
        text = fc.audio.transcriptions.create(model="moonshine", file=f, response_format="text")
    assert text.strip() == out.text.strip()  # greedy: the same text either way
    with open(tmp_path / "tone.wav", "rb") as f, pytest.raises(BadRequestError):
        fc.audio.translations.create(model="moonshine", file=f)  # Moonshine has no translate task
