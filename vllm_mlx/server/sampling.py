"""Map the OpenAI/vLLM sampling fields of a request onto ``SamplingParams``."""

from __future__ import annotations

from ..core import ParamError, SamplingParams
from .errors import ContextLengthError, bad_request
from .schemas.common import SamplingFields


def to_sampling_params(req: SamplingFields, *, max_tokens: int | None, logprobs: int | None,
                       vocab_size: int, defaults: dict) -> SamplingParams:
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stop) > 16:
        raise bad_request("At most 16 stop sequences are allowed", param="stop")
    bias = None
    if req.logit_bias:
        bias = {}
        for key, value in req.logit_bias.items():
            try:
                token = int(key)
            except ValueError:
                raise bad_request(f"logit_bias keys must be token ids, got {key!r}", param="logit_bias") from None
            if not 0 <= token < vocab_size:
                raise bad_request(f"logit_bias token id {token} is outside the vocabulary (0..{vocab_size - 1})",
                                  param="logit_bias")
            if not -100.0 <= value <= 100.0:
                raise bad_request("logit_bias values must be between -100 and 100", param="logit_bias")
            bias[token] = float(value)
    for token in req.stop_token_ids or []:
        if not 0 <= token < vocab_size:
            raise bad_request(f"stop_token_ids entry {token} is outside the vocabulary", param="stop_token_ids")
    if req.best_of is not None and req.best_of != req.n:
        raise bad_request("best_of is not supported; use n", param="best_of")
    temperature = req.temperature if req.temperature is not None else defaults.get("temperature", 1.0)
    params = SamplingParams(
        max_tokens=max_tokens if max_tokens is not None else 16,
        temperature=temperature,
        top_p=req.top_p if req.top_p is not None else defaults.get("top_p", 1.0),
        top_k=req.top_k if req.top_k is not None else defaults.get("top_k", 0),
        min_p=req.min_p if req.min_p is not None else defaults.get("min_p", 0.0),
        repetition_penalty=req.repetition_penalty if req.repetition_penalty is not None
        else defaults.get("repetition_penalty", 1.0),
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        logit_bias=bias,
        seed=req.seed,
        stop=stop,
        stop_token_ids=list(req.stop_token_ids or []),
        min_tokens=req.min_tokens,
        ignore_eos=req.ignore_eos,
        n=req.n,
        logprobs=logprobs,
        include_stop_str_in_output=req.include_stop_str_in_output,
        cache_salt=req.cache_salt,
    )
    if req.cache_salt is not None and not req.cache_salt:
        raise bad_request("cache_salt must be a non-empty string", param="cache_salt")
    try:
        params.validate()
    except ParamError as exc:
        raise bad_request(exc.message, param=exc.param) from None
    return params


def resolve_max_tokens(requested: int | None, prompt_len: int, max_model_len: int, *, default: int | None,
                       clamp: bool = False) -> int:
    """Check the prompt against the context window at once; pick max_tokens.

    ``clamp``: a ``requested`` beyond the room left is cut to fit (Anthropic's newer models do
    this and end with ``model_context_window_exceeded``) instead of being a 400."""
    if prompt_len >= max_model_len:
        raise ContextLengthError(
            f"This model's maximum context length is {max_model_len} tokens. However, your prompt has "
            f"{prompt_len} tokens, which leaves no room for a completion.",
            prompt_tokens=prompt_len, limit=max_model_len - 1, param="messages",
        )
    room = max_model_len - prompt_len
    if requested is None:
        return room if default is None else min(default, room)
    if requested < 1:
        raise bad_request("max_tokens must be at least 1", param="max_tokens")
    if requested > room and clamp:
        return room
    if requested > room:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{prompt_len + requested} tokens ({prompt_len} in the prompt, {requested} for the completion). "
            f"Please reduce the prompt or max_tokens.",
            param="max_tokens", code="context_length_exceeded",
        )
    return requested
