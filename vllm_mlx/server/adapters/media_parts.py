"""Images from every API into the pipeline's one shape.

The Anthropic and Responses adapters turn their image blocks / parts into Chat
Completions' ``image_url`` parts (a data: URL or an http(s) URL), placed in the
converted messages where the template should show them. ``take_media`` then walks
the finished messages (after any reordering, e.g. tool results moved before the
user's text) and collects them in prompt order as ``ChatRequest.media``, leaving
``{"type": "image"}`` (what vision chat templates render as an image placeholder).
So media fetching, limits, decoding and the processor run once, in
``pipeline.load_media``, for every API.
"""

from __future__ import annotations

from typing import Any

from ..errors import APIError, bad_request

_WHERE = "__where__"  # private key: which request field the part came from (error messages)


def image_part(url: str, where: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}, _WHERE: where}


def text_only(where: str, what: str = "image blocks", param: str = "messages") -> APIError:
    """The 400 for an image sent to a model without a vision tower."""
    return bad_request(f"{where}: {what} need a vision model; this model reads text only", param=param)


def content(texts_and_images: list[Any]) -> str | list[dict[str, Any]]:
    """One message's content: the text pieces joined with newlines (a string: some templates render
    only string content), or, when it holds an image, parts in their order."""
    if not any(isinstance(p, dict) for p in texts_and_images):
        return "\n".join(texts_and_images)
    return [p if isinstance(p, dict) else {"type": "text", "text": p} for p in texts_and_images]


def take_media(messages: list[dict[str, Any]]) -> list[tuple[str, dict]] | None:
    """Collect the image parts of ``messages`` in prompt order, replacing each by ``{"type": "image"}``."""
    media: list[tuple[str, dict]] = []
    for msg in messages:
        parts = msg.get("content")
        if not isinstance(parts, list):
            continue
        for k, part in enumerate(parts):
            if isinstance(part, dict) and part.get("type") == "image_url" and _WHERE in part:
                where = part.pop(_WHERE)
                media.append((where, part))
                parts[k] = {"type": "image"}
    return media or None
