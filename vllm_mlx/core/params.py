"""Per-request generation settings, independent of any wire format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class SamplingParams:
    """What one request asks of the sampler and the stopping rules.

    ``temperature == 0`` means greedy decoding. ``logprobs`` is ``None`` when
    the caller wants no log-probabilities, else the number of top alternatives
    to return with each token (0 returns only the chosen token's). ``guide``,
    when set, masks every step's logits to what its grammar accepts.
    """

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    min_tokens: int = 0
    ignore_eos: bool = False
    n: int = 1
    logprobs: int | None = None
    include_stop_str_in_output: bool = False
    cache_salt: str | None = None  # prefix-cache blocks are shared only between requests with the same salt
    guide: Any = None  # a compiled grammar (core.guided.Guide) that constrains the output

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def validate(self) -> None:
        """Raise ``ValueError(param, message)`` for settings no engine can honour."""
        checks = [
            ("max_tokens", self.max_tokens >= 1, "max_tokens must be at least 1"),
            ("temperature", 0.0 <= self.temperature <= 100.0, "temperature must be between 0 and 100"),
            ("top_p", 0.0 < self.top_p <= 1.0, "top_p must be in (0, 1]"),
            ("top_k", self.top_k >= -1, "top_k must be -1, 0 (disabled) or a positive integer"),
            ("min_p", 0.0 <= self.min_p <= 1.0, "min_p must be in [0, 1]"),
            ("repetition_penalty", self.repetition_penalty > 0.0, "repetition_penalty must be positive"),
            ("presence_penalty", -2.0 <= self.presence_penalty <= 2.0, "presence_penalty must be between -2 and 2"),
            ("frequency_penalty", -2.0 <= self.frequency_penalty <= 2.0, "frequency_penalty must be between -2 and 2"),
            ("min_tokens", 0 <= self.min_tokens <= self.max_tokens, "min_tokens must be between 0 and max_tokens"),
            ("n", 1 <= self.n <= 128, "n must be between 1 and 128"),
            ("logprobs", self.logprobs is None or 0 <= self.logprobs <= 20, "logprobs / top_logprobs must be between 0 and 20"),
        ]
        for param, ok, message in checks:
            if not ok:
                raise ParamError(param, message)


class ParamError(ValueError):
    """A request setting is out of range; ``param`` names the offending field."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param
        self.message = message
