"""What goes into the engine (a request) and what comes out of it (token events)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .params import SamplingParams


class OutputSink(Protocol):
    """Receives one engine step's events for the requests it owns.

    ``deliver`` is called on the engine thread, once per step, with every event
    of that step that belongs to this sink; it must not block.
    """

    def deliver(self, events: list["TokenEvent"]) -> None: ...


@dataclass(slots=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass(slots=True)
class TokenEvent:
    """One new token of one request, or the request's end.

    ``finish_reason`` is "stop" (end-of-sequence or a stop token id), "length"
    (max_tokens), "abort" or "error" (then ``error`` says why); None while the
    request runs. ``token_id`` is None only for events that carry no token.
    """

    request_id: str
    token_id: int | None
    finish_reason: str | None = None
    logprob: TokenLogprob | None = None
    error: str | None = None
    cached_tokens: int | None = None  # on a request's first token: prompt tokens served from the prefix cache


@dataclass(slots=True, eq=False)
class EngineRequest:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    sink: OutputSink
    arrival: float = field(default_factory=time.monotonic)
    uid: int | None = None  # BatchGenerator's id, set by the scheduler
    deadline: float | None = None  # time.monotonic() after which the engine ends it (--request-timeout)
    mm: Any = None  # a core.vision.MultiModalInput for requests with images
