"""The types plugins implement and return. Read together with ``hookspecs.py``.

Parsers are created once per request (they keep streaming state) from the
classes that plugins register; model loaders and cache policies are objects.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ModelKind = Literal["llm", "mllm", "stt", "tts", "embedding"]


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
        """Load the folder. ``options`` may hold ``lazy=True``: the caller needs the model's
        structure, tokenizer and settings but not its weights in memory (mlx-lm's ``lazy``);
        a loader that ignores it is still correct, only slower to start."""
        raise NotImplementedError

    def accepts(self, path: Path, config: dict) -> bool:
        """Whether this loader can load the folder when the user picked its kind
        (``--runner pooling`` for ``embedding`` loaders) though ``detect`` did not
        claim it, e.g. a decoder without sentence-transformers metadata."""
        return self.detect(path, config)


class EmbeddingModel:
    """What a loader of kind ``embedding`` returns as ``LoadedModel.model``.

    The embedding engine calls ``embed`` on its own thread (the one that owns
    every MLX call), with inputs grouped by a token budget: ``batch`` holds
    token-id lists of different lengths, and each row of the result must not
    depend on the others (pad and mask as the architecture needs). Rows come
    back pooled but not normalized; the engine truncates (``dimensions``) and
    L2-normalizes them.
    """

    dimensions: int = 0  # the length of one vector
    # May a request ask for fewer ``dimensions`` (Matryoshka training)? True: any
    # size up to ``dimensions``; a list: only those sizes; False: none.
    matryoshka: bool | list[int] = False
    vocab_size: int = 0  # token ids it takes; 0: the tokenizer's size

    def embed(self, batch: list[list[int]]) -> Any:
        """An ``mx.array`` of shape ``(len(batch), dimensions)``."""
        raise NotImplementedError


@dataclass
class ToolCall:
    """One complete tool call parsed from model output."""

    name: str
    arguments: str  # JSON text, as the OpenAI API carries it
    id: str = ""


@dataclass
class ToolCallDelta:
    """A piece of one streamed tool call (vLLM's ``DeltaToolCall``, flattened).

    The first delta of a call carries its ``index`` (0, 1, ... within the
    sequence), ``id`` and ``name`` (and usually ``arguments=""``); later deltas
    carry the same ``index`` and the next fragment of the JSON ``arguments``.
    Concatenating every fragment of a call gives its whole arguments text.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class DeltaMessage:
    """What ``extract_*_streaming`` returns for one step (vLLM's ``DeltaMessage``)."""

    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)


@dataclass
class ExtractedToolCalls:
    """What ``extract_tool_calls`` returns (vLLM's ``ExtractedToolCallInformation``)."""

    tools_called: bool
    tool_calls: list[ToolCall]
    content: str | None = None


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _overrides(obj: Any, base: type, name: str) -> bool:
    return getattr(type(obj), name) is not getattr(base, name)


class ReasoningParser:
    """Splits model text into reasoning and answer content. One instance per sequence.

    Implement either pair; the base class adapts each to the other:

    * vLLM's names: ``extract_reasoning(model_output, request)`` for a whole
      reply (non-streaming requests) and ``extract_reasoning_streaming(previous_text,
      current_text, delta_text, previous_token_ids, current_token_ids,
      delta_token_ids)`` per streamed step, returning a ``DeltaMessage`` or None;
    * vllm-mlx's streaming pair: ``feed(text) -> (reasoning_delta, content_delta)``
      and ``finish()`` to flush what was held back.

    The server streams through ``feed``/``finish`` and answers non-streaming
    requests with ``extract_reasoning``. ``prompt_ids`` lets a parser see
    whether the prompt already opened a reasoning block (as Qwen3 and
    DeepSeek-R1 templates can). ``delta_token_ids`` holds the token ids of the
    text passed to the current ``feed``.
    """

    name: str = ""

    def __init__(self, tokenizer: Any, prompt_ids: list[int] | None = None, **options: Any):
        self.tokenizer = tokenizer
        self.prompt_ids = prompt_ids
        self.request = options.get("request")
        self.delta_token_ids: list[int] = []
        self._text = ""
        self._ids: list[int] = []
        if not (_overrides(self, ReasoningParser, "feed")
                or _overrides(self, ReasoningParser, "extract_reasoning_streaming")):
            raise TypeError(f"{type(self).__name__} must implement feed() or extract_reasoning_streaming()")

    # -- vLLM's interface ------------------------------------------------------------
    def extract_reasoning(self, model_output: str, request: Any = None) -> tuple[str | None, str | None]:
        """Split a whole reply into ``(reasoning, content)``; either may be None."""
        reasoning, content = self.feed(model_output)
        r2, c2 = self.finish()
        return (reasoning + r2) or None, (content + c2) or None

    def extract_reasoning_streaming(self, previous_text: str, current_text: str, delta_text: str,
                                    previous_token_ids: list[int], current_token_ids: list[int],
                                    delta_token_ids: list[int]) -> DeltaMessage | None:
        reasoning, content = self.feed(delta_text)
        return DeltaMessage(content=content or None, reasoning=reasoning or None)

    # -- vllm-mlx's streaming interface ------------------------------------------------
    def feed(self, text: str) -> tuple[str, str]:
        previous, previous_ids = getattr(self, "_text", ""), getattr(self, "_ids", [])
        delta_ids = list(getattr(self, "delta_token_ids", []))
        self._text, self._ids = previous + text, previous_ids + delta_ids
        msg = self.extract_reasoning_streaming(previous, self._text, text, previous_ids, self._ids, delta_ids)
        if msg is None:
            return "", ""
        return msg.reasoning or "", msg.content or ""

    def finish(self) -> tuple[str, str]:
        return "", ""


class ToolParser:
    """Finds tool calls in answer content. One instance per sequence.

    Implement either pair; the base class adapts each to the other:

    * vLLM's names: ``extract_tool_calls(model_output, request) ->
      ExtractedToolCalls`` for a whole reply (non-streaming requests), and
      ``extract_tool_calls_streaming(previous_text, current_text, delta_text,
      previous_token_ids, current_token_ids, delta_token_ids, request)`` per
      streamed step, returning a ``DeltaMessage`` (content and/or
      ``ToolCallDelta`` pieces) or None;
    * vllm-mlx's streaming pair: ``feed(text) -> (content_delta, calls)`` and
      ``finish()``. ``calls`` may hold ``ToolCallDelta`` pieces (streamed
      arguments) or complete ``ToolCall`` objects (sent whole; the server gives
      them their index, and an id when they have none).

    The server streams through ``feed``/``finish`` and answers non-streaming
    requests with ``extract_tool_calls``. ``tools`` is the request's tool list
    as sent; ``request`` (an option) the request (``server.pipeline.ChatRequest``, whatever API it came from).
    ``template_markers``: strings that, all found in a model's chat template,
    make the server pick this parser when the user names none.
    """

    name: str = ""
    template_markers: tuple[str, ...] = ()

    def __init__(self, tokenizer: Any, tools: list[dict] | None = None, **options: Any):
        self.tokenizer = tokenizer
        self.tools = tools or []
        self.request = options.get("request")
        self.delta_token_ids: list[int] = []
        self._text = ""
        self._ids: list[int] = []
        if not (_overrides(self, ToolParser, "feed") or _overrides(self, ToolParser, "extract_tool_calls_streaming")):
            raise TypeError(f"{type(self).__name__} must implement feed() or extract_tool_calls_streaming()")

    # -- vLLM's interface ------------------------------------------------------------
    def extract_tool_calls(self, model_output: str, request: Any = None) -> ExtractedToolCalls:
        content, pieces = self.feed(model_output)
        c2, p2 = self.finish()
        calls = merge_tool_call_pieces(pieces + p2)
        text = content + c2
        return ExtractedToolCalls(bool(calls), calls, text if text.strip() or not calls else None)

    def extract_tool_calls_streaming(self, previous_text: str, current_text: str, delta_text: str,
                                     previous_token_ids: list[int], current_token_ids: list[int],
                                     delta_token_ids: list[int], request: Any = None) -> DeltaMessage | None:
        content, pieces = self.feed(delta_text)
        return DeltaMessage(content=content or None, tool_calls=as_deltas(pieces))

    # -- vllm-mlx's streaming interface ------------------------------------------------
    def feed(self, text: str) -> tuple[str, list[ToolCallDelta | ToolCall]]:
        previous, previous_ids = getattr(self, "_text", ""), getattr(self, "_ids", [])
        delta_ids = list(getattr(self, "delta_token_ids", []))
        self._text, self._ids = previous + text, previous_ids + delta_ids
        msg = self.extract_tool_calls_streaming(previous, self._text, text, previous_ids, self._ids, delta_ids,
                                                getattr(self, "request", None))
        if msg is None:
            return "", []
        return msg.content or "", list(msg.tool_calls or [])

    def finish(self) -> tuple[str, list[ToolCallDelta | ToolCall]]:
        return "", []


def as_deltas(pieces: list[Any], first_index: int = 0) -> list[ToolCallDelta]:
    """Normalise what a parser returned: whole ``ToolCall`` objects become one delta each
    (numbered from ``first_index``, given an id if they have none); vLLM-shaped pieces
    (``index``, ``id``, ``function`` with ``name``/``arguments``, as objects or dicts)
    become ``ToolCallDelta``."""
    out, index = [], first_index
    for p in pieces:
        if isinstance(p, ToolCall):
            out.append(ToolCallDelta(index=index, id=p.id or new_call_id(), name=p.name, arguments=p.arguments))
            index += 1
            continue
        if not isinstance(p, ToolCallDelta):
            p = _from_vllm_shape(p)
        out.append(p)
        index = max(index, p.index + 1)
    return out


def _from_vllm_shape(piece: Any) -> ToolCallDelta:
    def get(obj: Any, key: str) -> Any:
        return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

    fn = get(piece, "function") or {}
    return ToolCallDelta(index=get(piece, "index") or 0, id=get(piece, "id"), name=get(fn, "name"),
                         arguments=get(fn, "arguments") or "")


def merge_tool_call_pieces(pieces: list[Any]) -> list[ToolCall]:
    """Assemble streamed pieces into whole calls, in index order."""
    calls: dict[int, ToolCall] = {}
    for d in as_deltas(pieces):
        call = calls.setdefault(d.index, ToolCall(name="", arguments="", id=""))
        call.name = call.name or d.name or ""
        call.id = call.id or d.id or ""
        call.arguments += d.arguments
    return [calls[i] for i in sorted(calls)]


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
