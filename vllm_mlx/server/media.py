"""Images and videos in requests: fetch (data: URL, http(s) URL, local file), check,
decode (images here, videos in ``server.video``).

Everything here runs on the event loop or in worker threads, never on the
engine thread. Every failure is the client's: it becomes a 400 in OpenAI's
error shape naming the message and part it came from.

URL fetching is a server-side request on the client's behalf, so it is
restricted: http(s) only, no redirects (a redirect could leave the allowed
hosts), a timeout, a byte cap, an ``image/*`` (``video/*``) content type, and with
``--allowed-media-domains`` only the named hosts. Local files (``file://``)
are refused unless ``--allowed-local-media-path`` names a folder, and then only
files inside it (after resolving symlinks and ``..``).
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from .errors import bad_request

DEFAULT_LIMITS = {"image": 8, "video": 1}
MAX_PIXELS = 40_000_000  # larger pictures are refused before decoding (decompression bombs)


@dataclass(frozen=True)
class MediaSettings:
    limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    allowed_domains: tuple[str, ...] = ()  # empty: any host
    local_root: str | None = None
    timeout: float = 10.0
    max_bytes: int = 20 << 20


def parse_limits(text: str | None) -> dict[str, int]:
    """``--limit-mm-per-prompt`` as vLLM takes it: JSON (``{"image": 4, "video": 1}``) or
    ``image=4,video=1``."""
    import json

    if not text or not text.strip():
        return {}
    text = text.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"--limit-mm-per-prompt: not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ValueError("--limit-mm-per-prompt: must be a JSON object")
        return obj
    out: dict[str, int] = {}
    for item in text.split(","):
        kind, sep, n = item.partition("=")
        if not sep or not n.strip().lstrip("-").isdigit():
            raise ValueError(f"--limit-mm-per-prompt: {item!r} (want e.g. image=4,video=1 or JSON)")
        out[kind.strip()] = int(n)
    return out


def media_limits(user: dict[str, int] | None) -> dict[str, int]:
    limits = dict(DEFAULT_LIMITS)
    for kind, n in (user or {}).items():
        if kind not in ("image", "video", "audio") or not isinstance(n, int) or n < 0:
            raise ValueError(f"--limit-mm-per-prompt: {kind!r}: {n!r} (want image/video/audio: a count >= 0)")
        limits[kind] = n
    return limits


@dataclass
class Picture:
    """A decoded image and a digest of its pixels."""

    image: object  # PIL.Image.Image, RGB
    digest: bytes


def image_url_of(part: dict, where: str, key: str = "image_url") -> str:
    """The URL of an ``image_url`` (``video_url``) part: ``{"url": ...}`` or vLLM's
    bare-string shorthand."""
    value = part.get(key)
    if isinstance(value, dict):
        value = value.get("url")
    if not isinstance(value, str) or not value:
        raise bad_request(f"{where}: {key} needs a url (a data: URL, http(s) URL or file:// path)",
                          param="messages")
    return value


async def load_bytes(url: str, settings: MediaSettings, where: str, kind: str = "image") -> bytes:
    """The bytes of a medium (``kind``: image or video) under the server's fetch rules."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        return _data_url(url, settings, where, kind)
    if scheme in ("http", "https"):
        return await _fetch(url, settings, where, kind)
    if scheme == "file":
        return _local_file(url, settings, where, kind)
    raise bad_request(f"{where}: unsupported {kind} URL scheme {scheme or url[:16]!r} "
                      "(use data:, http(s): or file:)", param="messages")


def _data_url(url: str, settings: MediaSettings, where: str, kind: str = "image") -> bytes:
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise bad_request(f"{where}: malformed data: URL (no comma)", param="messages")
    media_type = header.split(";", 1)[0].strip().lower()
    if media_type and not media_type.startswith(f"{kind}/"):
        raise bad_request(f"{where}: data: URL of type {media_type!r} is not {_a(kind)}", param="messages")
    if len(payload) * 3 // 4 > settings.max_bytes:
        raise bad_request(f"{where}: {kind} is larger than {settings.max_bytes} bytes", param="messages")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload, validate=False)
        return unquote(payload).encode("latin-1")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise bad_request(f"{where}: the data: URL is not valid base64", param="messages") from None


async def _fetch(url: str, settings: MediaSettings, where: str, kind: str = "image") -> bytes:
    host = (urlparse(url).hostname or "").lower()
    if settings.allowed_domains and host not in settings.allowed_domains:
        raise bad_request(f"{where}: fetching {kind}s from {host!r} is not allowed on this server "
                          "(--allowed-media-domains)", param="messages")
    try:
        async with httpx.AsyncClient(timeout=settings.timeout, follow_redirects=False) as client:
            async with client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise bad_request(f"{where}: fetching the {kind} failed: HTTP {resp.status_code}",
                                      param="messages")
                ctype = resp.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if not ctype.startswith(f"{kind}/"):
                    raise bad_request(f"{where}: the URL returned {ctype or 'no content type'!r}, not {_a(kind)}",
                                      param="messages")
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > settings.max_bytes:
                    raise bad_request(f"{where}: {kind} is larger than {settings.max_bytes} bytes",
                                      param="messages")
                data = bytearray()
                async for chunk in resp.aiter_bytes():
                    data += chunk
                    if len(data) > settings.max_bytes:
                        raise bad_request(f"{where}: {kind} is larger than {settings.max_bytes} bytes",
                                          param="messages")
                return bytes(data)
    except httpx.TimeoutException:
        raise bad_request(f"{where}: fetching the {kind} timed out after {settings.timeout:g} s",
                          param="messages") from None
    except httpx.HTTPError as exc:
        raise bad_request(f"{where}: fetching the {kind} failed: {type(exc).__name__}", param="messages") from None


def _local_file(url: str, settings: MediaSettings, where: str, kind: str = "image") -> bytes:
    if not settings.local_root:
        raise bad_request(f"{where}: local files are not allowed on this server (--allowed-local-media-path)",
                          param="messages")
    root = Path(settings.local_root).resolve()
    path = Path(unquote(urlparse(url).path)).resolve()
    if not path.is_relative_to(root):
        raise bad_request(f"{where}: {path} is outside the allowed media folder", param="messages")
    try:
        if path.stat().st_size > settings.max_bytes:
            raise bad_request(f"{where}: {kind} is larger than {settings.max_bytes} bytes", param="messages")
        return path.read_bytes()
    except OSError as exc:
        raise bad_request(f"{where}: cannot read {path.name}: {exc.strerror or exc}", param="messages") from None


def _a(kind: str) -> str:
    return "an image" if kind == "image" else f"a {kind}"


def decode_image(data: bytes, where: str) -> Picture:
    """Decode to RGB (in a worker thread: decoding is CPU work)."""
    import hashlib

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise bad_request(f"{where}: image of {img.width}x{img.height} pixels is too large",
                                  param="messages")
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise bad_request(f"{where}: the image could not be decoded ({type(exc).__name__})",
                          param="messages") from None
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{rgb.width}x{rgb.height}".encode())
    h.update(rgb.tobytes())
    return Picture(rgb, h.digest())
