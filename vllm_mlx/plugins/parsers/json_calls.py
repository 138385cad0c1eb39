"""Reading ``{"name": ..., "arguments": {...}}`` call objects as they stream in.

Used by the Hermes, Llama 3, Mistral and forced-tool parsers. While the object
is incomplete, its name is read once the text has the common key order (name
first) and the arguments stream as the model's own text; once it is complete
the whole object is checked with ``json.loads``.
"""

from __future__ import annotations

import json
import re

from .markup_tools import PartialCall
from .text_scan import json_value_end

ARG_KEYS = ("arguments", "parameters")
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')


def arguments_text(args) -> str | None:
    """JSON text of a call's arguments, or None if they are not an object."""
    if args is None:
        return "{}"
    if isinstance(args, str):  # some models send the arguments as a JSON string
        try:
            args = json.loads(args)
        except ValueError:
            return None
    return json.dumps(args, ensure_ascii=False) if isinstance(args, dict) else None


def checked_arguments(raw: str) -> str | None:
    """``raw`` itself if it is a JSON object (so streamed pieces add up to it), else None."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return raw if isinstance(value, dict) else arguments_text(value) if isinstance(value, str) else None


def _partial(text: str, pos: int) -> PartialCall:
    """The call as far as its text reads like one: the name once written (name
    first), then the arguments text as the model wrote it."""
    head = _HEAD.match(text, pos)
    if head is None:
        return PartialCall()
    try:
        name = json.loads('"' + head.group(1) + '"')
    except ValueError:
        return PartialCall()
    a_end = json_value_end(text, head.end())
    args = text[head.end():a_end]
    return PartialCall(name, args if args.startswith("{") else "")


def parse_json_call(text: str, pos: int, final: bool) -> tuple[PartialCall, int | None, bool]:
    """Read the call object starting at ``text[pos]`` (after whitespace).

    Returns ``(call, end, error)``: ``end`` is the index past the object once it
    is complete, ``error`` says the text is not (or cannot become) a call; then
    ``call`` is what had been read of it (for a header already streamed).
    """
    end = json_value_end(text, pos)
    if end is not None:
        try:
            obj = json.loads(text[pos:end])
        except ValueError:
            return _partial(text[:end], pos), end, True
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return PartialCall(), end, True
        key = next((k for k in ARG_KEYS if k in obj), None)
        arguments = arguments_text(obj.get(key) if key else None)
        if arguments is None:
            return _partial(text[:end], pos), end, True
        partial = _partial(text[:end], pos)
        if partial.arguments and checked_arguments(partial.arguments) == partial.arguments:
            arguments = partial.arguments  # the model's own text, which is what was streamed
        return PartialCall(obj["name"], arguments, True), end, False
    rest = text[pos:].lstrip()
    if final or (rest and rest[0] != "{"):
        return _partial(text, pos), None, True
    return _partial(text, pos), None, False


def parse_call_sequence(text: str, pos: int, final: bool, separators: str) -> tuple[list[PartialCall], int, bool]:
    """Read call objects one after another, separated by any of ``separators``
    (and whitespace). Returns ``(calls, position after the last complete call, error)``."""
    calls: list[PartialCall] = []
    after = pos
    while True:
        call, end, error = parse_json_call(text, pos, final)
        if error:
            return calls, after, True
        if end is None:
            if call.name is not None:
                calls.append(call)
            return calls, after, False
        calls.append(call)
        after = pos = end
        while pos < len(text) and (text[pos].isspace() or text[pos] in separators):
            pos += 1
        if pos >= len(text) or text[pos] != "{":
            return calls, after, False
