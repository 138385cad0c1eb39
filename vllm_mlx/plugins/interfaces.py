"""The types plugins implement and return. Read together with ``hookspecs.py``.

Parsers are created once per request (they keep streaming state) from the
classes that plugins register; model loaders and cache policies are objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ModelKind = Literal["llm", "mllm", "stt", "tts"]


@dataclass
class LoadedModel:
    """What a model loader returns.

    ``model`` and ``tokenizer`` are what the engine runs (for LLMs: an mlx-lm
    model and its ``TokenizerWrapper``); ``processor`` is for multimodal models.
    ``default_reasoning_parser`` / ``default_tool_parser`` name the parsers the
    server uses when the user names none.
    """

    model: Any
    tokenizer: Any
    kind: ModelKind = "llm"
    processor: Any = None
    config: dict = field(default_factory=dict)
    path: Path | None = None
    loader: str = ""
    default_reasoning_parser: str | None = None
    default_tool_parser: str | None = None
    is_demo: bool = False
    context_length: int | None = None


class ModelLoader:
    """Detects and loads one family of model folders.

    ``name`` identifies the loader; ``kind`` says what it loads; loaders with a
    higher ``priority`` are asked first, so a family loader can claim a folder
    before the generic mlx-lm one.
    """

    name: str = ""
    kind: ModelKind = "llm"
    priority: int = 0

    def detect(self, path: Path, config: dict) -> bool:
        raise NotImplementedError

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        raise NotImplementedError


@dataclass
class ToolCall:
    """One complete tool call parsed from model output."""

    name: str
    arguments: str  # JSON text, as the OpenAI API carries it
    id: str = ""


class ReasoningParser:
    """Splits streamed model text into reasoning and answer content.

    One instance per request. ``feed`` takes each new piece of text and returns
    ``(reasoning_delta, content_delta)``; ``finish`` flushes what is held back.
    ``prompt_ids`` lets a parser see whether the prompt already opened a
    reasoning block (as Qwen3 and DeepSeek-R1 templates can).
    """

    name: str = ""

    def __init__(self, tokenizer: Any, prompt_ids: list[int] | None = None, **options: Any):
        self.tokenizer = tokenizer

    def feed(self, text: str) -> tuple[str, str]:
        raise NotImplementedError

    def finish(self) -> tuple[str, str]:
        return "", ""


class ToolParser:
    """Finds tool calls in streamed answer content.

    One instance per request. ``feed`` returns ``(content_delta, completed_calls)``:
    plain text passes through, call markup is held back until a call is complete.
    ``finish`` flushes: it returns leftover text and any call that can still be
    parsed.
    """

    name: str = ""

    def __init__(self, tokenizer: Any, tools: list[dict] | None = None, **options: Any):
        self.tokenizer = tokenizer
        self.tools = tools or []

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        raise NotImplementedError

    def finish(self) -> tuple[str, list[ToolCall]]:
        return "", []


@dataclass
class CacheOptions:
    """What the user asked of the KV cache (``vllm-mlx serve`` flags)."""

    kv_bits: int | None = None  # --kv-cache-bits: quantize full-attention layers' KV to 4 or 8 bits
    kv_group_size: int = 64  # --kv-cache-group-size
    sliding_window: int | None = None  # --sliding-window: None = the model's own; 0 = full cache on every layer


class CachePolicy:
    """Decides which KV cache each layer of a model uses.

    ``make_cache`` returns fresh per-layer caches for one sequence (mlx-lm cache
    objects: ``KVCache``, ``RotatingKVCache``, ``vllm_mlx.core.kv_quantized.
    PagedQuantizedKVCache``, ...); the engine calls it for every request and
    merges them into the running batch. Prefix sharing works on layers whose
    cache is ``KVCache`` or ``PagedQuantizedKVCache``; if any layer uses another
    kind, the engine runs that model without prefix sharing and says why at
    start-up.

    With ``--cache-policy auto`` (the default) the policy with the highest
    ``priority`` whose ``applies`` accepts the model is used; built-in family
    policies (``gemma3``) outrank ``default``.
    """

    name: str = ""
    priority: int = 0

    def applies(self, model: Any, config: dict) -> bool:
        return False

    def make_cache(self, model: Any, options: CacheOptions) -> list[Any]:
        raise NotImplementedError
