"""Audio in and out through PyAV, whose wheels bundle FFmpeg: any common upload (wav,
mp3, m4a, ogg/opus, webm, flac) decodes in-process, and speech encodes to OpenAI's
formats without a system ffmpeg."""

from __future__ import annotations

import io

import numpy as np

# OpenAI's response_format for speech -> (container, codec, sample format, media type)
SPEECH_FORMATS = {
    "mp3": ("mp3", "libmp3lame", "fltp", "audio/mpeg"),
    "opus": ("ogg", "libopus", "flt", "audio/ogg"),
    "aac": ("adts", "aac", "fltp", "audio/aac"),
    "flac": ("flac", "flac", "s16", "audio/flac"),
    "wav": ("wav", "pcm_s16le", "s16", "audio/wav"),
    "pcm": (None, None, None, "audio/pcm"),
}


class AudioError(ValueError):
    """The upload is not audio we can decode (the message says why)."""


def decode_audio(data: bytes, rate: int = 16000) -> np.ndarray:
    """Decode any container/codec FFmpeg knows into mono float32 samples at ``rate``."""
    import av

    if not data:
        raise AudioError("the audio file is empty")
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                raise AudioError("the file holds no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = []
            for frame in container.decode(streams[0]):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise AudioError(f"cannot decode the audio file: {exc}") from None
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise AudioError("the audio file holds no samples")
    return samples


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class AudioEncoder:
    """Encodes mono float32 chunks into one stream of ``fmt``, piece by piece: ``add``
    returns the bytes ready so far, ``finish`` the rest. A streamed reply is then one
    valid file (one header), not a file per chunk."""

    def __init__(self, fmt: str, rate: int):
        import av

        self.fmt, self.rate = fmt, rate
        container, codec, sample_format, _ = SPEECH_FORMATS[fmt]
        self._buf = io.BytesIO()
        self._sent = 0
        if container is None:  # raw pcm
            self._out = None
            return
        self._out = av.open(self._buf, mode="w", format=container)
        codec_rate = rate if codec != "libopus" or rate in (48000, 24000, 16000, 12000, 8000) else 48000
        self._stream = self._out.add_stream(codec, rate=codec_rate, layout="mono")
        self._resampler = av.AudioResampler(format=sample_format, layout="mono", rate=codec_rate)

    def add(self, samples: np.ndarray) -> bytes:
        if self._out is None:
            return to_pcm16(samples)
        if samples.size:
            import av

            frame = av.AudioFrame.from_ndarray(np.asarray(samples, np.float32).reshape(1, -1), format="flt",
                                               layout="mono")
            frame.sample_rate = self.rate
            for f in self._resampler.resample(frame):
                for packet in self._stream.encode(f):
                    self._out.mux(packet)
        return self._take()

    def finish(self) -> bytes:
        if self._out is None:
            return b""
        for f in self._resampler.resample(None):
            for packet in self._stream.encode(f):
                self._out.mux(packet)
        for packet in self._stream.encode(None):
            self._out.mux(packet)
        self._out.close()
        return self._take()

    def _take(self) -> bytes:
        data = self._buf.getvalue()
        new, self._sent = data[self._sent:], len(data)
        return new


def encode_audio(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """One whole file (a container's header patched at the end, as a WAV's sizes are)."""
    enc = AudioEncoder(fmt, rate)
    data = enc.add(samples) + enc.finish()
    return data if enc._out is None else enc._buf.getvalue()
