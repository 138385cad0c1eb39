"""A chat request with images or video, made ready for the engine: its media fetched and
decoded, and the model's processor run over the templated text and the pictures
(expanding each image placeholder to the model's image tokens and computing
pixel values). The processor and decoding run in worker threads, never on the
engine thread or blocking the event loop."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from ..core.vision import MultiModalInput, arrays_hash, media_hash
from .errors import bad_request
from .media import MediaSettings, decode_image, image_url_of, load_bytes

# Processor outputs that are text-side or that we pass ourselves; the rest (e.g.
# Qwen-VL's image_grid_thw, pixel_values_videos, video_grid_thw) go to the model.
_TEXT_KEYS = {"input_ids", "attention_mask", "token_type_ids", "pixel_values", "num_crops", "mm_token_type_ids"}
_IMAGE_ARRAYS = ("pixel_values", "image_grid_thw")
_VIDEO_ARRAYS = ("pixel_values_videos", "video_grid_thw")

# What a request may set through mm_processor_kwargs: image-processing choices only
# (anything else could change how the text is tokenized or what arrays come back),
# and our frame sampling of videos (fps, max_frames: see server.video).
PROCESSOR_KWARGS = {"do_pan_and_scan", "pan_and_scan_min_crop_size", "pan_and_scan_max_num_crops",
                    "pan_and_scan_min_ratio_to_activate", "min_pixels", "max_pixels"}
VIDEO_KWARGS = {"fps", "max_frames"}


def _kind(part: dict) -> str:
    return "video" if part.get("type") == "video_url" else "image"


async def load_media_items(media: list[tuple[str, dict]], settings: MediaSettings,
                           kwargs: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The request's pictures and video clips, each list in prompt order: fetched
    concurrently on the event loop, decoded in worker threads."""
    from .video import decode_video, sampling_options

    for kind in ("image", "video"):
        count = sum(1 for _, part in media if _kind(part) == kind)
        limit = settings.limits.get(kind, 0)
        if count > limit:
            raise bad_request(f"this request has {count} {kind}s; the limit is {limit} per prompt "
                              "(--limit-mm-per-prompt)", param="messages")
    fps, max_frames = sampling_options(kwargs)
    items = [(where, _kind(part), image_url_of(part, where, f"{_kind(part)}_url")) for where, part in media]
    blobs = await asyncio.gather(*(load_bytes(url, settings, where, kind) for where, kind, url in items))

    def decode(where: str, kind: str, blob: bytes) -> Any:
        return decode_image(blob, where) if kind == "image" else decode_video(blob, where, fps, max_frames)

    decoded = await asyncio.gather(*(asyncio.to_thread(decode, where, kind, blob)
                                     for (where, kind, _), blob in zip(items, blobs)))
    pictures = [d for (_, kind, _), d in zip(items, decoded) if kind == "image"]
    clips = [d for (_, kind, _), d in zip(items, decoded) if kind == "video"]
    return pictures, clips


async def load_pictures(media: list[tuple[str, dict]], settings: MediaSettings) -> list[Any]:
    """The pictures of image-only media (``load_media_items`` for images and video)."""
    pictures, _ = await load_media_items(media, settings, {})
    return pictures


def _declares(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def run_processor(processor: Any, text: str, pictures: list[Any], kwargs: dict[str, Any],
                  clips: list[Any] | None = None) -> tuple[list[int], MultiModalInput]:
    """Token ids and vision inputs of one prompt. The templated text already holds the
    BOS token, so the processor must not add another (``add_special_tokens=False``)."""
    import numpy as np

    clips = clips or []
    call = dict(kwargs)
    if pictures:
        call["images"] = [p.image for p in pictures]
    if clips:
        call["videos"] = [c.array for c in clips]
        # Qwen3-VL prints each frame group's timestamp: it reads where the frames came from
        if _declares(processor.__call__, "video_metadata"):
            call["video_metadata"] = [c.metadata for c in clips]
        if _declares(processor.__call__, "fps"):
            call["fps"] = [c.fps for c in clips]
    try:
        out = processor(text=[text], add_special_tokens=False, **call)
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # e.g. placeholder and media counts differ
        raise bad_request(f"the media could not be prepared for this model: {exc}", param="messages") from None
    ids = out["input_ids"]
    ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    ids = ids[0] if ids and isinstance(ids[0], list) else ids
    extra = {k: v for k, v in out.items() if k not in _TEXT_KEYS and v is not None}
    pixels = out.get("pixel_values") if pictures else None
    arrays = {"pixel_values": pixels, **extra} if pixels is not None else dict(extra)
    keys = {}
    for kind, names in (("image", _IMAGE_ARRAYS), ("video", _VIDEO_ARRAYS)):
        part = {n: arrays[n] for n in names if n in arrays}
        if part and any(np.asarray(v).size for v in part.values()):
            keys[kind] = arrays_hash(part)
    digests = [b"image:" + p.digest for p in pictures] + [b"video:" + c.digest for c in clips]
    mm = MultiModalInput(pixel_values=pixels, extra=extra, content_hash=media_hash(digests),
                         num_images=len(pictures), num_videos=len(clips), features_key=arrays_hash(arrays),
                         features_keys=keys)
    return ids, mm


async def prepare_vision_prompt(processor: Any, text: str, media: list[tuple[str, dict]],
                                settings: MediaSettings, kwargs: dict[str, Any] | None,
                                video: bool = False) -> tuple[list[int], MultiModalInput]:
    """``video``: the model takes video (else a ``video_url`` part is a 400)."""
    kwargs = dict(kwargs or {})
    unknown = sorted(set(kwargs) - PROCESSOR_KWARGS - VIDEO_KWARGS)
    if unknown:
        raise bad_request(f"mm_processor_kwargs: unsupported {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(PROCESSOR_KWARGS | VIDEO_KWARGS))}", param="mm_processor_kwargs")
    if not video:
        for where, part in media:
            if _kind(part) == "video":
                raise bad_request(f"{where}: this model does not take video (video_url); send images instead",
                                  param="messages")
    pictures, clips = await load_media_items(media, settings, kwargs)
    proc_kwargs = {k: v for k, v in kwargs.items() if k in PROCESSOR_KWARGS}
    return await asyncio.to_thread(run_processor, processor, text, pictures, proc_kwargs, clips)
