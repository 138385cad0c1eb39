"""Test audio, and the random-weight speech model folders (built by the package's
``vllm_mlx.bench.speech_models``, which ``vllm-mlx bench speech`` uses too)."""

from __future__ import annotations

import numpy as np

from vllm_mlx.bench.speech_models import (  # noqa: F401  (re-exported for the tests)
    KOKORO_PHONEMES, KOKORO_VOICES, WHISPER_DIMS, build_kokoro, build_whisper, kokoro_config, whisper_tokenizer,
)


def tone_wav(seconds: float, rate: int = 16000, freq: float = 440.0) -> bytes:
    """A tone with some noise, as a 16-bit WAV file."""
    import io
    import wave

    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def tone_in(container: str, codec: str, seconds: float = 2.0, rate: int = 48000) -> bytes:
    """A tone encoded with PyAV into any container/codec (m4a = mp4/aac, webm = webm/opus, ...)."""
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        t = np.arange(int(rate * seconds)) / rate
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32).reshape(1, -1),
                                           format="flt", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.codec.audio_formats[0].name, layout="mono",
                                      rate=rate)
        for f in resampler.resample(frame):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()
