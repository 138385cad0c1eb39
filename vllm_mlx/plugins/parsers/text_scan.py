"""Small helpers for scanning streamed text for markers split across chunks."""

from __future__ import annotations


def partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


def split_safe(text: str, marker: str) -> tuple[str, str]:
    """Split ``text`` into (safe to emit, held back because it may start ``marker``)."""
    keep = partial_suffix(text, marker)
    return (text[: len(text) - keep], text[len(text) - keep:]) if keep else (text, "")
