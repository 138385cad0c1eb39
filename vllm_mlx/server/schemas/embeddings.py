"""Embeddings request and response schemas (OpenAI's, plus vLLM's extensions)."""

from __future__ import annotations

from typing import Literal

import msgspec


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    # a string, a list of strings, a list of token ids, or a list of token-id lists
    # (msgspec allows one array type per union, so the shape is checked in the route)
    input: str | list[str | int | list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    # vLLM extensions
    truncate_prompt_tokens: int | None = None  # keep the last k tokens of each input; -1: the context size
    add_special_tokens: bool = True


class EmbeddingData(msgspec.Struct, kw_only=True):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class EmbeddingUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = 0  # vLLM sends it; the openai SDK ignores it


class EmbeddingResponse(msgspec.Struct, kw_only=True):
    id: str
    created: int
    model: str
    data: list[EmbeddingData]
    usage: EmbeddingUsage
    object: str = "list"
