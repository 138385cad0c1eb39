"""(Legacy) Completions request and response schemas."""

from __future__ import annotations

import msgspec

from .common import SamplingFields, Usage


class CompletionRequest(SamplingFields, kw_only=True):
    # one string, token ids, or a batch of either (msgspec allows one list type per union)
    prompt: str | list[str | int | list[int]]
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = None


class CompletionLogprobs(msgspec.Struct, kw_only=True):
    tokens: list[str] = []
    token_logprobs: list[float] = []
    top_logprobs: list[dict[str, float]] = []
    text_offset: list[int] = []


class CompletionChoice(msgspec.Struct, kw_only=True):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None


class Completion(msgspec.Struct, kw_only=True):
    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
