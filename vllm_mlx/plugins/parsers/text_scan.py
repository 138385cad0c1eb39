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


def held_prefix(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that may still become one of ``markers``."""
    return max((partial_suffix(text, m) for m in markers), default=0)


_CLOSE = {"{": "}", "[": "]"}
_SCALAR_END = set(",}] \t\r\n")


def json_value_end(text: str, pos: int) -> int | None:
    """Index just past the JSON value starting at ``text[pos]`` (after optional
    whitespace), or None while it is incomplete. Tracks strings, escapes and
    nesting only; it does not validate (``json.loads`` does that once it ends).
    A hand-rolled scanner because a streaming call needs to know where its
    arguments end before the text is a parseable document."""
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    if pos >= n:
        return None
    first = text[pos]
    if first not in "{[\"":
        end = pos
        while end < n and text[end] not in _SCALAR_END:
            end += 1
        return end if end < n else None
    stack: list[str] = []
    in_str = escaped = False
    i = pos
    while i < n:
        ch = text[i]
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
                if not stack:
                    return i + 1
        elif ch == '"':
            in_str = True
        elif ch in _CLOSE:
            stack.append(_CLOSE[ch])
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return i + 1  # mismatched: let json.loads report it
            if not stack:
                return i + 1
        i += 1
    return None
