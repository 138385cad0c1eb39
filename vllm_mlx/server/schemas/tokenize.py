"""vLLM's ``/tokenize`` and ``/detokenize`` schemas (same field names and defaults)."""

from __future__ import annotations

from typing import Any

import msgspec

from .chat import ChatMessage


class TokenizeRequest(msgspec.Struct, kw_only=True):
    """vLLM's ``TokenizeCompletionRequest`` (``prompt``) and ``TokenizeChatRequest``
    (``messages``) in one: send exactly one of the two."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    # None: vLLM's defaults, true for a prompt and false for messages (the template adds its own)
    add_special_tokens: bool | None = None
    return_token_strs: bool | None = False
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    chat_template_kwargs: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None


class TokenizeResponse(msgspec.Struct, kw_only=True):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(msgspec.Struct, kw_only=True):
    tokens: list[int]
    model: str | None = None


class DetokenizeResponse(msgspec.Struct, kw_only=True):
    prompt: str
