"""Pieces shared by the chat and completions schemas."""

from __future__ import annotations

import msgspec


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class PromptTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int = 0


class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None

    @classmethod
    def of(cls, prompt: int, completion: int, cached: int = 0) -> "Usage":
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                   prompt_tokens_details=PromptTokensDetails(cached_tokens=min(cached, prompt)))


class SamplingFields(msgspec.Struct, kw_only=True):
    """Sampling fields both endpoints accept (OpenAI's plus vLLM's extensions)."""

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # vLLM extensions
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    cache_salt: str | None = None  # share prefix-cache blocks only with requests carrying the same salt
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    best_of: int | None = None


class ModelCard(msgspec.Struct, kw_only=True):
    """One model, in a shape both the openai and the anthropic SDKs accept."""

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "vllm-mlx"
    type: str = "model"
    display_name: str = ""
    created_at: str = ""
    root: str | None = None
    max_model_len: int | None = None
    description: str | None = None
    kind: str = "llm"  # llm, mllm, stt, tts, embedding (vllm-mlx extension)


class ModelList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[ModelCard] = []
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None
