"""A chat request with images, made ready for the engine: its media fetched and
decoded, and the model's processor run over the templated text and the pictures
(expanding each image placeholder to the model's image tokens and computing
pixel values). The processor and decoding run in worker threads, never on the
engine thread or blocking the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

from ..core.vision import MultiModalInput, arrays_hash, media_hash
from .errors import bad_request
from .media import MediaSettings, decode_image, image_url_of, load_bytes

# Processor outputs that are text-side or that we pass ourselves; the rest (e.g.
# Qwen-VL's image_grid_thw) go to the model's get_input_embeddings.
_TEXT_KEYS = {"input_ids", "attention_mask", "token_type_ids", "pixel_values", "num_crops"}

# What a request may set through mm_processor_kwargs: image-processing choices only
# (anything else could change how the text is tokenized or what arrays come back).
PROCESSOR_KWARGS = {"do_pan_and_scan", "pan_and_scan_min_crop_size", "pan_and_scan_max_num_crops",
                    "pan_and_scan_min_ratio_to_activate", "min_pixels", "max_pixels"}


async def load_pictures(media: list[tuple[str, dict]], settings: MediaSettings) -> list[Any]:
    limit = settings.limits.get("image", 0)
    if len(media) > limit:
        raise bad_request(f"this request has {len(media)} images; the limit is {limit} per prompt "
                          "(--limit-mm-per-prompt)", param="messages")
    urls = [(where, image_url_of(part, where)) for where, part in media]
    blobs = await asyncio.gather(*(load_bytes(url, settings, where) for where, url in urls))
    return await asyncio.gather(*(asyncio.to_thread(decode_image, blob, where)
                                  for (where, _), blob in zip(urls, blobs)))


def run_processor(processor: Any, text: str, pictures: list[Any], kwargs: dict[str, Any]) -> tuple[list[int],
                                                                                                    MultiModalInput]:
    """Token ids and vision inputs of one prompt. The templated text already holds the
    BOS token, so the processor must not add another (``add_special_tokens=False``)."""
    images = [p.image for p in pictures]
    try:
        out = processor(text=[text], images=images, add_special_tokens=False, **kwargs)
    except (ValueError, TypeError, KeyError) as exc:  # e.g. placeholder and image counts differ
        raise bad_request(f"the images could not be prepared for this model: {exc}", param="messages") from None
    ids = out["input_ids"]
    ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
    ids = ids[0] if ids and isinstance(ids[0], list) else ids
    extra = {k: v for k, v in out.items() if k not in _TEXT_KEYS and v is not None}
    mm = MultiModalInput(pixel_values=out["pixel_values"], extra=extra,
                         content_hash=media_hash([p.digest for p in pictures]), num_images=len(pictures),
                         features_key=arrays_hash({"pixel_values": out["pixel_values"], **extra}))
    return ids, mm


async def prepare_vision_prompt(processor: Any, text: str, media: list[tuple[str, dict]],
                                settings: MediaSettings, kwargs: dict[str, Any] | None) -> tuple[list[int],
                                                                                                  MultiModalInput]:
    unknown = sorted(set(kwargs or {}) - PROCESSOR_KWARGS)
    if unknown:
        raise bad_request(f"mm_processor_kwargs: unsupported {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(PROCESSOR_KWARGS))}", param="mm_processor_kwargs")
    pictures = await load_pictures(media, settings)
    return await asyncio.to_thread(run_processor, processor, text, pictures, dict(kwargs or {}))
