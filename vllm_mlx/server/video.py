"""Videos in requests: decode a clip in-process with PyAV (it bundles FFmpeg's
decoders; no ffmpeg binary, no subprocess) and sample frames, in a worker thread.

Frames are sampled at ``fps`` frames per second of video (default 2), at most
``max_frames`` of them (default 32): a longer clip gets ``max_frames`` frames
spread evenly over it. Both are per-request choices (``mm_processor_kwargs``).
Every failure is the client's: a 400 naming the message part.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field

from .errors import APIError, bad_request
from .media import MAX_PIXELS

DEFAULT_FPS = 2.0
DEFAULT_MAX_FRAMES = 32
MAX_FRAMES_LIMIT = 256  # the most a request may ask for
MAX_DECODED_FRAMES = 100_000  # a clip with more frames than this is refused (decoding cost)


@dataclass
class Clip:
    """Sampled frames of one video (each an (H, W, 3) uint8 array), where they came
    from, and a digest of their pixels (the prefix cache's and encoder cache's key)."""

    frames: list = field(default_factory=list)
    indices: list[int] = field(default_factory=list)  # source frame numbers of the sampled frames
    source_fps: float = 0.0  # frames per second of the source (for timestamps)
    fps: float = DEFAULT_FPS  # the sampling rate asked for
    digest: bytes = b""

    @property
    def array(self):
        import numpy as np

        return np.stack(self.frames)

    @property
    def metadata(self) -> dict:
        """What Qwen3-VL's processor reads to print each frame group's timestamp."""
        return {"frames_indices": list(self.indices), "fps": self.source_fps}


def sampling_options(kwargs: dict) -> tuple[float, int]:
    """``fps`` and ``max_frames`` from a request's ``mm_processor_kwargs``, checked."""
    fps, max_frames = kwargs.get("fps", DEFAULT_FPS), kwargs.get("max_frames", DEFAULT_MAX_FRAMES)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (0 < fps <= 60) or not math.isfinite(fps):
        raise bad_request(f"mm_processor_kwargs.fps must be a number in (0, 60], got {fps!r}",
                          param="mm_processor_kwargs")
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or not 1 <= max_frames <= MAX_FRAMES_LIMIT:
        raise bad_request(f"mm_processor_kwargs.max_frames must be an integer in [1, {MAX_FRAMES_LIMIT}], "
                          f"got {max_frames!r}", param="mm_processor_kwargs")
    return float(fps), max_frames


def _targets(duration: float, fps: float, max_frames: int) -> list[float]:
    """Times (seconds) to sample: every 1/fps, or ``max_frames`` evenly spread when that is more."""
    count = max(1, int(duration * fps + 1e-6))
    if count <= max_frames:
        return [i / fps for i in range(count)]
    return [duration * i / max_frames for i in range(max_frames)]


def decode_video(data: bytes, where: str, fps: float = DEFAULT_FPS, max_frames: int = DEFAULT_MAX_FRAMES) -> Clip:
    """Sampled RGB frames of a clip (in a worker thread: decoding is CPU work)."""
    import numpy as np

    try:
        import av
    except ImportError:
        raise APIError(501, f"{where}: this server cannot decode video: PyAV is not installed "
                            "(pip install 'vllm-mlx[vision]')", param="messages") from None

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise bad_request(f"{where}: the video has no video stream", param="messages")
            stream = container.streams.video[0]
            if (stream.codec_context.width or 0) * (stream.codec_context.height or 0) > MAX_PIXELS:
                raise bad_request(f"{where}: video frames of {stream.codec_context.width}x"
                                  f"{stream.codec_context.height} pixels are too large", param="messages")
            rate = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            if stream.frames and rate:  # the frame count is exact where the container knows it
                duration = stream.frames / rate
            if rate:
                fps = min(fps, rate)  # no more frames than the clip has: never the same frame twice
            targets = _targets(duration, fps, max_frames) if duration else None
            target = 0  # the next target time's index
            picked: list = []  # (source frame number, frame)
            first_t, next_t = None, 0.0
            for index, frame in enumerate(container.decode(stream)):
                if index >= MAX_DECODED_FRAMES:
                    raise bad_request(f"{where}: the video has more than {MAX_DECODED_FRAMES} frames",
                                      param="messages")
                if frame.width * frame.height > MAX_PIXELS:
                    raise bad_request(f"{where}: video frames of {frame.width}x{frame.height} pixels are too large",
                                      param="messages")
                t = frame.time if frame.time is not None else (index / rate if rate else float(index))
                first_t = t if first_t is None else first_t
                t -= first_t  # times from the first frame (a stream may start later than 0)
                if targets is not None:
                    # the first frame at or after each target time (once, if several targets fall on it)
                    if t + 1e-6 >= targets[target]:
                        picked.append((index, frame.to_ndarray(format="rgb24")))
                        while target < len(targets) and t + 1e-6 >= targets[target]:
                            target += 1
                    if target == len(targets):
                        break
                elif t + 1e-6 >= next_t:  # no known duration: sample as frames come, thin out below
                    picked.append((index, frame.to_ndarray(format="rgb24")))
                    next_t += 1 / fps
    except av.error.FFmpegError as exc:
        raise bad_request(f"{where}: the video could not be decoded ({type(exc).__name__})",
                          param="messages") from None
    except (ValueError, OSError, EOFError) as exc:
        raise bad_request(f"{where}: the video could not be decoded ({type(exc).__name__})",
                          param="messages") from None
    if not picked:
        raise bad_request(f"{where}: the video has no frames that could be decoded", param="messages")
    if len(picked) > max_frames:
        keep = np.linspace(0, len(picked) - 1, max_frames).round().astype(int)
        picked = [picked[i] for i in keep]
    h = hashlib.blake2b(digest_size=16)
    h.update(f"video:{len(picked)}".encode())
    for _, arr in picked:
        h.update(f"{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return Clip(frames=[a for _, a in picked], indices=[i for i, _ in picked], source_fps=rate or fps, fps=fps,
                digest=h.digest())
