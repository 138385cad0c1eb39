"""POST /v1/audio/transcriptions and /v1/audio/translations (OpenAI's speech-to-text)."""

from __future__ import annotations

from typing import AsyncIterator

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from ...speech.transcribe import RATE, join_text, to_srt, to_vtt, transcription_steps
from ..errors import APIError, bad_request
from ..schemas.audio import (
    TranscriptDelta, TranscriptDone, Transcription, TranscriptionForm, TranscriptionSegment,
    TranscriptionUsage, TranscriptionVerbose, TranscriptionWord,
)
from ..streaming import SSE_HEADERS, sse, sse_error
from .audio_form import decode_upload, read_form
from .common import served_model, server_state, unless_disconnected


@post("/v1/audio/transcriptions", status_code=200)
async def transcriptions(request: Request) -> Response:
    return await _stt(request, "transcribe")


@post("/v1/audio/translations", status_code=200)
async def translations(request: Request) -> Response:
    return await _stt(request, "translate")


async def _stt(request: Request, task: str) -> Response:
    state = server_state(request)
    form, data = await read_form(request, TranscriptionForm, state.settings.max_audio_bytes)
    model = served_model(state, form.model, ("stt",))
    if not 0.0 <= form.temperature <= 1.0:
        raise bad_request("temperature must be between 0 and 1", param="temperature")
    whisper = model.loaded.model
    language = _language_code(form.language) if task == "transcribe" else None
    if task == "translate" and not whisper.is_multilingual:
        raise bad_request(f"The model `{model.name}` is English-only: it cannot translate", param="model")
    audio = await decode_upload(data)
    duration = round(len(audio) / RATE, 3)
    words = "word" in form.timestamp_granularities
    if words and form.response_format != "verbose_json":
        raise bad_request("timestamp_granularities needs response_format=verbose_json",
                          param="timestamp_granularities")

    def steps():
        return transcription_steps(whisper, audio, task=task, language=language, prompt=form.prompt,
                                   temperature=form.temperature, words=words,
                                   timestamps=form.response_format in ("verbose_json", "srt", "vtt"))

    usage = TranscriptionUsage(seconds=duration)
    if form.stream:
        if form.response_format not in ("json", "text"):
            raise bad_request("stream=true gives text events; use response_format json or text",
                              param="response_format")
        return Stream(_stream(model.runner.run(steps), usage), media_type="text/event-stream", headers=SSE_HEADERS)
    windows = await unless_disconnected(request, model.runner.call(steps))
    text = join_text([w.text for w in windows])
    segments = [s for w in windows for s in w.segments]
    fmt = form.response_format
    if fmt == "text":
        return Response(content=text + "\n", media_type="text/plain; charset=utf-8")
    if fmt == "srt":
        return Response(content=to_srt(segments), media_type="text/plain; charset=utf-8")
    if fmt == "vtt":
        return Response(content=to_vtt(segments), media_type="text/vtt; charset=utf-8")
    if fmt == "json":
        return _json(Transcription(text=text, usage=usage))
    detected = next((w.language for w in windows if w.language), language) or "en"
    return _json(TranscriptionVerbose(
        task=task, language=_language_name(detected), duration=duration, text=text, usage=usage,
        segments=[_segment(i, s) for i, s in enumerate(segments)],
        words=[TranscriptionWord(word=w["word"], start=w["start"], end=w["end"])
               for s in segments for w in s.get("words", [])] if words else None))


async def _stream(windows: AsyncIterator, usage: TranscriptionUsage) -> AsyncIterator[bytes]:
    parts: list[str] = []
    try:
        async for w in windows:
            delta = (" " if parts and w.text.strip() else "") + w.text.strip()
            if w.text.strip():
                parts.append(w.text)
                yield sse(TranscriptDelta(delta=delta))
        yield sse(TranscriptDone(text=join_text(parts), usage=usage))
    except Exception as exc:  # noqa: BLE001 - the stream ends with an error event
        yield sse_error(APIError(500, f"transcription failed: {type(exc).__name__}: {exc}", type="server_error"))


def _segment(i: int, s: dict) -> TranscriptionSegment:
    return TranscriptionSegment(id=i, seek=int(s.get("seek", 0)), start=s["start"], end=s["end"], text=s["text"],
                                tokens=[int(t) for t in s.get("tokens", [])],
                                temperature=float(s.get("temperature") or 0.0),
                                avg_logprob=float(s.get("avg_logprob") or 0.0),
                                compression_ratio=float(s.get("compression_ratio") or 0.0),
                                no_speech_prob=float(s.get("no_speech_prob") or 0.0))


def _json(obj) -> Response:
    return Response(content=msgspec.json.encode(obj), media_type="application/json")


def _language_code(language: str | None) -> str | None:
    from mlx_audio.stt.models.whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    if not language:
        return None
    code = language.lower()
    code = TO_LANGUAGE_CODE.get(code, code)
    if code not in LANGUAGES:
        raise bad_request(f"Unknown language {language!r}: use an ISO-639-1 code such as en, es, fr",
                          param="language")
    return code


def _language_name(code: str) -> str:
    from mlx_audio.stt.models.whisper.tokenizer import LANGUAGES

    return LANGUAGES.get(code, code)
