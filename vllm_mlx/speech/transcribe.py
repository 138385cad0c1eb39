"""Transcription window by window, and OpenAI's response formats for it.

Audio is cut into 30 s windows (Whisper's input size); each window is one step of the
speech engine, so a long file interleaves with other work and streams window by window.
Segment and word times are made absolute by the window's offset."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

RATE = 16000
WINDOW_SECONDS = 30


@dataclass
class WindowResult:
    text: str
    language: str | None
    segments: list[dict] = field(default_factory=list)


def transcription_steps(model: Any, audio: np.ndarray, *, task: str = "transcribe", language: str | None = None,
                        prompt: str | None = None, temperature: float = 0.0,
                        words: bool = False, timestamps: bool = True) -> Iterator[WindowResult]:
    """Yields one ``WindowResult`` per 30 s window; runs on the speech engine thread.

    ``timestamps=False`` (json and text replies need no times) decodes in Whisper's
    no-timestamps mode: one decoding pass per window. With timestamps, mlx-audio re-seeks to
    the last timestamp inside the window and decodes the rest again, as OpenAI's Whisper does."""
    import mlx.core as mx

    window = WINDOW_SECONDS * RATE
    for index, start in enumerate(range(0, max(len(audio), 1), window)):
        offset = start / RATE
        # temperature is one value: mlx-audio's fallback ladder (up to 6 decodes a window) is for
        # offline use; OpenAI's API takes one temperature
        out = model.generate(mx.array(audio[start:start + window]), language=language, task=task,
                             temperature=float(temperature), initial_prompt=prompt if index == 0 else None,
                             word_timestamps=words, return_timestamps=timestamps or words, verbose=None,
                             fp16=model.dtype == mx.float16)
        language = language or out.language
        end = min(start + window, len(audio)) / RATE
        segments = _ordered([_shift(s, offset) for s in (out.segments or [])], offset, end)
        yield WindowResult(text=out.text, language=out.language, segments=segments)


def _shift(segment: dict, offset: float) -> dict:
    s = dict(segment)
    s["start"] = round(float(s["start"]) + offset, 3)
    s["end"] = round(float(s["end"]) + offset, 3)
    if s.get("words"):
        s["words"] = [{**w, "start": round(float(w["start"]) + offset, 3), "end": round(float(w["end"]) + offset, 3)}
                      for w in s["words"]]
    return s


def _ordered(segments: list[dict], start: float, end: float) -> list[dict]:
    """Keep segment times in order and inside their window: a weak model (or a random
    one) can emit timestamps that run backwards or past the end of the audio."""
    last = start
    for s in segments:
        s["start"] = min(max(s["start"], last), end)
        s["end"] = min(max(s["end"], s["start"]), end)
        last = s["end"]
        word_end = s["start"]
        for w in s.get("words") or []:
            w["start"] = min(max(w["start"], word_end), s["end"])
            w["end"] = min(max(w["end"], w["start"]), s["end"])
            word_end = w["end"]
    return segments


def join_text(parts: list[str]) -> str:
    return " ".join(p.strip() for p in parts if p.strip())


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(max(seconds, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: list[dict]) -> str:
    blocks = [f"{i}\n{_stamp(s['start'], ',')} --> {_stamp(s['end'], ',')}\n{s['text'].strip()}\n"
              for i, s in enumerate(segments, 1)]
    return "\n".join(blocks)


def to_vtt(segments: list[dict]) -> str:
    blocks = [f"{_stamp(s['start'], '.')} --> {_stamp(s['end'], '.')}\n{s['text'].strip()}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(blocks)
