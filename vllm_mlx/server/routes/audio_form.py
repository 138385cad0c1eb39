"""Reading an audio upload: the multipart form into a msgspec Struct, the file within
the size limit, decoded off the event loop."""

from __future__ import annotations

import asyncio
from typing import TypeVar

import msgspec
import numpy as np
from litestar import Request
from litestar.datastructures import UploadFile

from ...speech.audio_io import AudioError, decode_audio
from ..errors import APIError, bad_request, from_decode_error

T = TypeVar("T")


async def read_form(request: Request, kind: type[T], max_bytes: int) -> tuple[T, bytes]:
    """The form's fields as ``kind`` and the uploaded file's bytes."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + 64 * 1024:  # + room for the other fields
        raise _too_large(max_bytes)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request("Send the audio as multipart/form-data with a `file` field", param="file")
    form = await request.form()
    fields: dict = {}
    upload = None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key == "file":
                upload = value
            continue
        name = key[:-2] if key.endswith("[]") else key
        if name in ("timestamp_granularities", "include"):
            fields.setdefault(name, []).append(value)
        else:
            fields[name] = value
    try:
        obj = msgspec.convert(fields, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise from_decode_error(exc) from None
    if upload is None:
        raise bad_request("The `file` field (the audio) is missing", param="file")
    data = await upload.read()
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return obj, data


def _too_large(max_bytes: int) -> APIError:
    return APIError(413, f"The audio file is larger than {max_bytes} bytes (--max-audio-bytes)", param="file",
                    code="file_too_large")


async def decode_upload(data: bytes) -> np.ndarray:
    """16 kHz mono float32 samples; 400 if the file is not audio we can read."""
    try:
        return await asyncio.to_thread(decode_audio, data)
    except AudioError as exc:
        raise bad_request(f"Invalid audio file: {exc}", param="file", code="invalid_audio") from None
