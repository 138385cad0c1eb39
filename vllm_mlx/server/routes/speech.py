"""POST /v1/audio/speech (OpenAI's text-to-speech) and GET /v1/audio/voices (extension)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import AsyncIterator

import msgspec
import numpy as np
from litestar import Request, Response, get, post
from litestar.response import Stream

from ...speech.audio_io import SPEECH_FORMATS, AudioEncoder, AudioError, decode_audio, encode_audio
from ...speech.mlx_audio_models import SpeechOptionError
from ...speech.synthesize import LANGUAGES, G2PUnavailable
from ..errors import APIError, bad_request
from ..schemas.audio import SpeechAudioDelta, SpeechAudioDone, SpeechRequest, SpeechUsage, Voice, VoiceList
from ..streaming import SSE_HEADERS, sse, sse_error
from .audio_form import read_form
from .common import decode_body, served_model, server_state, unless_disconnected

MAX_INPUT_CHARS = 4096  # OpenAI's limit


@post("/v1/audio/speech", status_code=200)
async def speech(request: Request) -> Response:
    state = server_state(request)
    req = await decode_body(request, SpeechRequest)
    model = served_model(state, req.model, ("tts",))
    runner = model.loaded.model
    if not req.input.strip():
        raise bad_request("`input` is empty", param="input")
    if len(req.input) > MAX_INPUT_CHARS:
        raise bad_request(f"`input` is longer than {MAX_INPUT_CHARS} characters", param="input")
    if not 0.25 <= req.speed <= 4.0:
        raise bad_request("speed must be between 0.25 and 4.0", param="speed")
    if getattr(runner, "generic", False):
        return await generic_speech(request, req, model)
    voice = req.voice or next(iter(runner.voices))
    if voice not in runner.voices:
        raise bad_request(f"Unknown voice {voice!r}; this model's voices: {', '.join(runner.voices)}",
                          param="voice", code="unknown_voice")
    lang = req.language or voice[:1]
    if lang not in LANGUAGES:
        raise bad_request(f"Unknown language {lang!r}: one of {', '.join(LANGUAGES)}", param="language")
    if req.input_type == "text":
        try:  # G2P is plain Python (no MLX): check it off the event loop, before any audio is sent
            await asyncio.to_thread(runner.g2p, lang)
        except G2PUnavailable as exc:
            raise bad_request(str(exc), param="input", code="g2p_unavailable") from None

    def steps():
        return runner.steps(req.input, voice, req.speed, lang, req.input_type == "phonemes")

    media_type = SPEECH_FORMATS[req.response_format][3]
    if req.stream_format == "sse":
        return Stream(_sse(model.runner.run(steps), req, runner.sample_rate), media_type="text/event-stream",
                      headers=SSE_HEADERS)
    if req.stream_format == "audio":
        return Stream(_audio(model.runner.run(steps), req.response_format, runner.sample_rate),
                      media_type=media_type, headers={"Cache-Control": "no-cache"})
    try:
        chunks = await unless_disconnected(request, model.runner.call(steps))
    except G2PUnavailable as exc:
        raise bad_request(str(exc), param="input", code="g2p_unavailable") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    data = await asyncio.to_thread(encode_audio, samples, runner.sample_rate, req.response_format)
    return Response(content=data, media_type=media_type)


async def _audio(chunks: AsyncIterator[np.ndarray], fmt: str, rate: int) -> AsyncIterator[bytes]:
    """One audio stream, encoded as sentences arrive (one header, not one per chunk)."""
    encoder = AudioEncoder(fmt, rate)
    async for chunk in chunks:
        data = encoder.add(chunk)
        if data:
            yield data
    tail = encoder.finish()
    if tail:
        yield tail


async def _sse(chunks: AsyncIterator[np.ndarray], req: SpeechRequest, rate: int) -> AsyncIterator[bytes]:
    encoder = AudioEncoder(req.response_format, rate)
    samples = 0
    try:
        async for chunk in chunks:
            samples += chunk.size
            data = encoder.add(chunk)
            if data:
                yield sse(SpeechAudioDelta(audio=base64.b64encode(data).decode()))
        tail = encoder.finish()
        if tail:
            yield sse(SpeechAudioDelta(audio=base64.b64encode(tail).decode()))
        tokens = len(req.input)
        yield sse(SpeechAudioDone(usage=SpeechUsage(input_tokens=tokens, output_tokens=samples,
                                                    total_tokens=tokens + samples)))
    except Exception as exc:  # noqa: BLE001 - the stream ends with an error event
        yield sse_error(APIError(500, f"speech failed: {type(exc).__name__}: {exc}", type="server_error"))


async def generic_speech(request: Request, req: SpeechRequest, model) -> Response:
    """Any mlx-audio TTS model (``speech/mlx_audio_models.py``): options beyond OpenAI's
    fields pass to the model's ``generate``; a reference clip clones a voice."""
    runner = model.loaded.model
    if req.input_type == "phonemes":
        raise bad_request(f"input_type=phonemes is for Kokoro; {runner.family} reads text", param="input_type")
    raw = msgspec.json.decode(await request.body())
    options = {k: v for k, v in raw.items() if k not in SpeechRequest.__struct_fields__}
    ref_audio = await _ref_audio(req.ref_audio, runner.sample_rate) if req.ref_audio else None
    try:
        make = runner.prepare(req.input, req.voice, req.speed, req.language, ref_audio, req.ref_text, options)
    except SpeechOptionError as exc:
        raise bad_request(str(exc), param=exc.param, code=exc.code) from None
    except (AudioError, KeyError) as exc:
        raise bad_request(f"voice {req.voice!r}: {exc}", param="voice") from None
    media_type = SPEECH_FORMATS[req.response_format][3]
    if req.stream_format == "sse":
        return Stream(_sse(model.runner.run(make), req, runner.sample_rate), media_type="text/event-stream",
                      headers=SSE_HEADERS)
    if req.stream_format == "audio":
        return Stream(_audio(model.runner.run(make), req.response_format, runner.sample_rate),
                      media_type=media_type, headers={"Cache-Control": "no-cache"})
    try:
        chunks = await unless_disconnected(request, model.runner.call(make))
    except (ValueError, TypeError) as exc:  # what mlx-audio models raise for input or options they cannot take
        raise bad_request(f"{runner.family}: {exc}", param="input", code="model_rejected_input") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    data = await asyncio.to_thread(encode_audio, samples, runner.sample_rate, req.response_format)
    return Response(content=data, media_type=media_type)


async def _ref_audio(value: str, rate: int) -> np.ndarray:
    """A base64 clip (or a ``data:audio/...;base64,`` URL), decoded at the model's rate."""
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("`ref_audio` is not base64", param="ref_audio") from None
    try:
        return await asyncio.to_thread(decode_audio, data, rate)
    except AudioError as exc:
        raise bad_request(f"`ref_audio`: {exc}", param="ref_audio") from None


@get("/v1/audio/voices")
async def voices(request: Request, model: str | None = None) -> Response:
    state = server_state(request)
    found = served_model(state, model, ("tts",))
    body = VoiceList(model=found.name, data=[Voice(id=v, name=v, language=lang)
                                             for v, lang in found.loaded.model.voices.items()])
    return Response(content=msgspec.json.encode(body), media_type="application/json")


class VoiceUpload(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """POST /v1/audio/voices (multipart, vllm-mlx): a reference clip kept as a named voice."""

    name: str
    model: str | None = None
    text: str | None = None  # the clip's transcript, for models that want one (VoxCPM)


@post("/v1/audio/voices", status_code=201)
async def upload_voice(request: Request) -> Response:
    state = server_state(request)
    form, data = await read_form(request, VoiceUpload, state.settings.max_audio_bytes)
    found = served_model(state, form.model, ("tts",))
    runner = found.loaded.model
    if not getattr(runner, "generic", False) or not runner.clones:
        raise bad_request(f"The model `{found.name}` does not clone voices", param="model",
                          code="cloning_unsupported")
    name = form.name.strip()
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise bad_request("`name`: 1-64 letters, digits, '-', '_' or '.'", param="name")
    try:
        samples = await asyncio.to_thread(decode_audio, data, runner.sample_rate)
    except AudioError as exc:
        raise bad_request(str(exc), param="file") from None
    runner.add_voice(name, samples, form.text)
    body = Voice(id=name, name=name, language="any")
    return Response(content=msgspec.json.encode(body), media_type="application/json", status_code=201)
