"""Fault isolation for per-request code that runs inside the shared batch step.

Logits processors are per request (penalties, ``min_tokens``, grammar masks,
plugin processors), but mlx-lm calls them inside one batch step:
an exception there would fail the step for every sequence. Each one is wrapped
so that an exception marks only its own request as failed and lets the step
finish with that request's logits untouched; the scheduler then ends the
request with an error and removes it before the next step.
"""

from __future__ import annotations

import logging
import traceback
from typing import Callable

import mlx.core as mx

log = logging.getLogger("vllm_mlx.scheduler")


class Failure:
    """Where a request's first failure is recorded."""

    __slots__ = ("message",)

    def __init__(self) -> None:
        self.message: str | None = None

    def record(self, what: str, exc: BaseException) -> None:
        if self.message is None:
            self.message = f"{what} failed: {type(exc).__name__}: {exc}"
            log.error("%s\n%s", self.message, traceback.format_exc())


class GuardedProcessor:
    def __init__(self, fn: Callable, failure: Failure):
        self.fn, self.failure = fn, failure

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        if self.failure.message is not None:
            return logits
        try:
            return self.fn(tokens, logits)
        except Exception as exc:  # noqa: BLE001 - isolate: only this request fails
            self.failure.record("logits processor", exc)
            return logits

    def rewind(self, n: int) -> None:
        if hasattr(self.fn, "rewind"):
            self.fn.rewind(n)


def guard(processors: list, failure: Failure) -> list:
    """Wrap one request's logits processors. Samplers are not wrapped: they are
    ours, and unseeded requests with equal settings share one sampler object so
    that the batch samples them in one call."""
    return [GuardedProcessor(p, failure) for p in processors]
