"""``vllm-mlx bench speech``: speech serving against its targets, one JSON line per scenario.

One real server (``vllm-mlx serve LLM WHISPER KOKORO`` on a loopback port) and three scenarios:

* ``rtf``: a transcription through HTTP (upload, decoding, the engine thread, JSON reply)
  against the same transcription through mlx-audio directly in this process: the same
  weights (float32 off Apple's GPU, as the server loads them), the same 30 s windows, one
  temperature, no timestamps (what a ``json`` reply asks for), the same 16-bit samples, one
  ``generate`` call per 30 s window as the server makes them. Real-time factor = audio
  seconds / wall seconds; the best of ``repeats`` runs each, taken in turn (and the median of
  the back-to-back pairs' ratios, steadier on a busy machine). Target ratio >= 0.95.
* ``tts``: the first audio chunk of a three-sentence input streamed (``stream_format=audio``)
  against the whole synthesis of the same input (not streamed). Target ratio <= 0.4.
* ``interleave``: the inter-token latency (ITL) of ``streams`` concurrent streaming chats,
  alone (``alone_rounds`` rounds, half before and half after), and in rounds while a
  transcription of ``audio_seconds`` runs (only gaps that fall inside the transcription
  count). Target: p99 with / p99 alone <= 2. With ``no_turns`` the same is measured once
  more on a server started with ``--no-device-turns``, for comparison.

Random-weight models (nothing is downloaded): give folders, or the Whisper and Kokoro ones
are built (``speech_models``); the LLM comes from ``shared/bench/make_model.py`` or any
mlx-lm folder. Random Whisper weights never say end-of-text, so each window decodes the full
224 tokens: the longest a window can take.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .stats import Reporter, percentile

THREE_SENTENCES = "həlˈoʊ ðɛɹ. ðɪs ɪz ə tˈɛst ʌv stɹˈiːmɪŋ. ɡʊdbˈaɪ fɔːɹ nˈaʊ."  # phonemes: no G2P needed


class SpeechBenchError(RuntimeError):
    pass


@dataclass
class SpeechBenchConfig:
    llm: str | None = None
    whisper: str | None = None
    kokoro: str | None = None
    scenarios: tuple[str, ...] = ("rtf", "tts", "interleave")
    audio_seconds: float = 60.0
    streams: int = 4
    max_tokens: int = 64
    repeats: int = 3
    alone_rounds: int = 4  # chat rounds without a transcription (the baseline)
    no_turns: bool = False
    label: str = ""
    timeout: float = 900.0


def speech_bench(cfg: SpeechBenchConfig, report: Reporter) -> None:
    with tempfile.TemporaryDirectory(prefix="vllm-mlx-bench-speech-") as tmp:
        whisper, kokoro = _models(cfg, Path(tmp))
        audio = _test_audio(cfg.audio_seconds)
        names = ["whisper", "kokoro"]
        models = [whisper, kokoro]
        if cfg.llm:
            names.insert(0, "llm")
            models.insert(0, cfg.llm)
        elif "interleave" in cfg.scenarios:
            raise SpeechBenchError("the interleave scenario needs --llm (an mlx-lm model folder)")
        with _Server(models, names, Path(tmp) / "server.log", cfg.timeout) as server:
            if "rtf" in cfg.scenarios:
                report(_rtf(cfg, server.url, whisper, audio))
            if "tts" in cfg.scenarios:
                report(_tts(cfg, server.url))
            if "interleave" in cfg.scenarios:
                report(_interleave(cfg, server.url, audio, turns=True))
        if "interleave" in cfg.scenarios and cfg.no_turns:
            with _Server(models, names, Path(tmp) / "server-no-turns.log", cfg.timeout,
                         ["--no-device-turns"]) as server:
                report(_interleave(cfg, server.url, audio, turns=False))


def _models(cfg: SpeechBenchConfig, tmp: Path) -> tuple[str, str]:
    from .speech_models import BENCH_WHISPER_DIMS, build_kokoro, build_whisper

    whisper = cfg.whisper or str(build_whisper(tmp / "whisper-bench", dims=BENCH_WHISPER_DIMS))
    kokoro = cfg.kokoro or str(build_kokoro(tmp / "kokoro-random"))
    return whisper, kokoro


def _test_audio(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


# -- rtf ---------------------------------------------------------------------------
def _rtf(cfg: SpeechBenchConfig, url: str, whisper: str, audio: np.ndarray) -> dict:
    import httpx

    from ..speech.audio_io import decode_audio

    seconds = len(audio) / 16000
    data = _wav(audio)
    samples = decode_audio(data)  # what the server hears: the upload's 16-bit samples, decoded (not timed)
    model = _direct_whisper(whisper)

    def http_once() -> tuple[float, str]:
        start = time.perf_counter()
        r = httpx.post(url + "/v1/audio/transcriptions", timeout=cfg.timeout,
                       files={"file": ("bench.wav", data, "audio/wav")},
                       data={"model": "whisper", "language": "en", "response_format": "json", "temperature": "0"})
        r.raise_for_status()
        return time.perf_counter() - start, r.json()["text"]

    def direct_once() -> tuple[float, str]:
        """mlx-audio's ``generate`` on each 30 s window, as the server calls it (a whole-file call
        would cut the mel spectrogram at other places and join the texts otherwise)."""
        import mlx.core as mx

        start = time.perf_counter()
        texts = []
        for at in range(0, len(samples), 30 * 16000):
            out = model.generate(mx.array(samples[at:at + 30 * 16000]), language="en", temperature=0.0,
                                 return_timestamps=False, verbose=None, fp16=model.dtype == mx.float16)
            texts.append(out.text)
        return time.perf_counter() - start, " ".join(t.strip() for t in texts if t.strip())

    http_s, direct_s, same = [], [], True
    for _ in range(cfg.repeats):
        d, d_text = direct_once()
        h, h_text = http_once()
        direct_s.append(d)
        http_s.append(h)
        same = same and _words(d_text) == _words(h_text)
    rtf_http, rtf_direct = seconds / min(http_s), seconds / min(direct_s)
    pairs = sorted(d / h for d, h in zip(direct_s, http_s))  # each pair ran back to back: less drift
    return {"scenario": "rtf", "audio_s": round(seconds, 2), "http_s": round(min(http_s), 3),
            "direct_s": round(min(direct_s), 3), "rtf_http": round(rtf_http, 3), "rtf_direct": round(rtf_direct, 3),
            "ratio": round(rtf_http / rtf_direct, 3), "ratio_median_of_pairs": round(pairs[len(pairs) // 2], 3),
            "http_all_s": [round(x, 2) for x in http_s], "direct_all_s": [round(x, 2) for x in direct_s],
            "target": ">= 0.95", "same_text": same,
            "runs": cfg.repeats, "label": cfg.label}


def _words(text: str) -> list[str]:
    return text.split()


def _direct_whisper(path: str):
    """mlx-audio's Whisper model object with the folder's weights as the server holds them.

    mlx-audio's own ``load_model`` rounds the weights to float16 (and float16 is ~9x slower on
    the CPU backend), so the weights are loaded into mlx-audio's ``Model`` the way the server's
    Whisper loader does (float32 off Apple's GPU), in this process, without any of the server's
    machinery: the direct calls below are plain mlx-audio."""
    from ..model_source import load_model
    from ..plugins import PluginManager

    return load_model(path, PluginManager(), kinds=("stt",)).model


# -- tts ---------------------------------------------------------------------------
def _tts(cfg: SpeechBenchConfig, url: str) -> dict:
    import httpx

    body = {"model": "kokoro", "voice": "af_heart", "input": THREE_SENTENCES, "response_format": "mp3",
            "input_type": "phonemes"}
    full, first = [], []
    for _ in range(cfg.repeats):
        start = time.perf_counter()
        r = httpx.post(url + "/v1/audio/speech", json=body, timeout=cfg.timeout)
        r.raise_for_status()
        full.append(time.perf_counter() - start)
        start = time.perf_counter()
        first_at = None
        with httpx.stream("POST", url + "/v1/audio/speech", json={**body, "stream_format": "audio"},
                          timeout=cfg.timeout) as resp:
            resp.raise_for_status()
            for chunk in resp.iter_raw():
                if chunk and first_at is None:
                    first_at = time.perf_counter() - start
        first.append(first_at if first_at is not None else float("nan"))
    return {"scenario": "tts", "sentences": 3, "full_s": round(min(full), 3), "first_chunk_s": round(min(first), 3),
            "ratio": round(min(first) / min(full), 3), "target": "<= 0.4", "format": "mp3", "runs": cfg.repeats,
            "label": cfg.label}


# -- interleave --------------------------------------------------------------------
def _interleave(cfg: SpeechBenchConfig, url: str, audio: np.ndarray, *, turns: bool) -> dict:
    return asyncio.run(_interleave_async(cfg, url, audio, turns))


async def _interleave_async(cfg: SpeechBenchConfig, url: str, audio: np.ndarray, turns: bool) -> dict:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=cfg.timeout) as client:
        await _chat_round(client, cfg, warm=True)
        alone: list[list[float]] = []
        for _ in range(cfg.alone_rounds // 2):  # half before, half after: a busy machine drifts
            alone += await _chat_round(client, cfg)
        data = _wav(audio)
        window: dict[str, float] = {}

        async def transcribe():
            window["start"] = time.monotonic()
            r = await client.post("/v1/audio/transcriptions", files={"file": ("bench.wav", data, "audio/wav")},
                                  data={"model": "whisper", "language": "en", "response_format": "json"})
            window["end"] = time.monotonic()
            r.raise_for_status()

        job = asyncio.ensure_future(transcribe())
        stamps: list[list[float]] = []
        rounds = 0
        while not job.done():
            stamps += await _chat_round(client, cfg)
            rounds += 1
        await job
        turn_stats = (await client.get("/health")).json().get("device_turns")
        for _ in range(cfg.alone_rounds - cfg.alone_rounds // 2):
            alone += await _chat_round(client, cfg)
    gaps_alone = _gaps(alone)
    gaps_with = _gaps(stamps, window["start"], window["end"])
    p99_alone, p99_with = percentile(gaps_alone, 99), percentile(gaps_with, 99)
    return {"scenario": "interleave", "device_turns": turns, "streams": cfg.streams, "audio_s": len(audio) / 16000,
            "transcription_s": round(window["end"] - window["start"], 2), "chat_rounds": rounds,
            "itl_samples_alone": len(gaps_alone), "itl_samples_with": len(gaps_with),
            "itl_p50_ms_alone": _ms(percentile(gaps_alone, 50)), "itl_p99_ms_alone": _ms(p99_alone),
            "itl_p50_ms_with": _ms(percentile(gaps_with, 50)), "itl_p99_ms_with": _ms(p99_with),
            "itl_p95_ms_alone": _ms(percentile(gaps_alone, 95)), "itl_p95_ms_with": _ms(percentile(gaps_with, 95)),
            "itl_max_ms_alone": _ms(max(gaps_alone) if gaps_alone else 0.0),
            "itl_max_ms_with": _ms(max(gaps_with) if gaps_with else 0.0), "device_turns_stats": turn_stats,
            "p99_ratio": round(p99_with / p99_alone, 3) if p99_alone and p99_with == p99_with else None, "target": "<= 2.0",
            "label": cfg.label}


async def _chat_round(client, cfg: SpeechBenchConfig, warm: bool = False) -> list[list[float]]:
    """``streams`` streaming chats at once; each stream's token arrival times."""
    async def one(i: int) -> list[float]:
        body = {"model": "llm", "stream": True, "max_tokens": 4 if warm else cfg.max_tokens, "temperature": 0,
                "ignore_eos": True, "messages": [{"role": "user", "content": f"Tell me a story, number {i}."}]}
        times = []
        async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            resp.raise_for_status()
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                    times.append(time.monotonic())
        return times

    return list(await asyncio.gather(*[one(i) for i in range(cfg.streams)]))


def _gaps(streams: list[list[float]], start: float | None = None, end: float | None = None) -> list[float]:
    gaps = []
    for times in streams:
        for a, b in zip(times, times[1:]):
            if start is None or (a >= start and b <= end):
                gaps.append(b - a)
    return gaps


def _ms(seconds: float) -> float | None:
    return None if seconds != seconds else round(seconds * 1000, 1)  # NaN (no samples): null


# -- the server ----------------------------------------------------------------------
class _Server:
    def __init__(self, models: list[str], names: list[str], log: Path, timeout: float, extra: list[str] = ()):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "vllm_mlx.cli.main", "serve", *models, "--port", str(self.port),
                "--log-level", "warning", *[a for n in names for a in ("--served-model-name", n)], *extra]
        self.log = log
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log_file, stderr=subprocess.STDOUT, env=dict(os.environ))
        self.timeout = timeout

    def __enter__(self) -> "_Server":
        import httpx

        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SpeechBenchError(f"the server exited ({self.proc.returncode}): {self._tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise SpeechBenchError(f"the server did not start in {self.timeout:.0f} s: {self._tail()}")

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()

    def _tail(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")[-2000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
