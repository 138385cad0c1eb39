"""What the routes share: the served models (a registry by name and kind), the LLM's
engine front, names and settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from ..core import AsyncEngine
from ..core.embedding_engine import AsyncEmbedder
from ..plugins.interfaces import LoadedModel
from .responses_store import ResponsesStore


@dataclass
class ServerSettings:
    served_model_name: str
    api_key: str | None = None
    max_model_len: int = 4096
    reasoning_parser: str | None = None
    tool_call_parser: str | None = None
    cache_policy: str = "default"
    max_num_seqs: int = 64
    max_queue: int = 1024  # sequences allowed to wait beyond max_num_seqs before 429
    allowed_origins: tuple[str, ...] = ()  # CORS is off unless origins are named
    default_chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    sampling_defaults: dict[str, Any] = field(default_factory=dict)  # from generation_config.json
    model_aliases: tuple[str, ...] = ()  # --model-alias names, globs allowed ("claude-*")
    ping_interval: float = 10.0  # Anthropic streams: seconds between pings while waiting for the first token
    max_audio_bytes: int = 25 * 1024 * 1024  # largest audio upload (413 beyond)
    media: Any = None  # server.media.MediaSettings (limits and URL rules for images)


@dataclass
class ServedModel:
    """One model this server serves. ``runner`` is what runs it for its kind: the
    ``AsyncEngine`` of an LLM, the ``SpeechEngine`` of an stt/tts model; a new kind
    (embeddings, ...) registers its own runner and routes look it up by kind.
    ``runner`` must offer ``shutdown()`` and ``health() -> dict``."""

    name: str
    kind: str
    loaded: LoadedModel
    runner: Any
    aliases: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()  # --model-alias names, globs allowed ("claude-*")
    state: Any = None  # an LLM's or embedding model's own ServerState (its engine, settings, parsers)

    def answers_to(self, name: str) -> bool:
        return name == self.name or name in self.aliases or any(fnmatchcase(name, p) for p in self.patterns)


class WrongKind(LookupError):
    """The named model exists but is of another kind than the route serves."""

    def __init__(self, model: ServedModel, wanted: tuple[str, ...]):
        super().__init__(f"The model `{model.name}` is a {model.kind} model; this endpoint needs a "
                         f"{' or '.join(wanted)} model")
        self.model = model


@dataclass
class ServerState:
    # the primary model's engine front: AsyncEngine (generation) or AsyncEmbedder (kind "embedding");
    # both have .engine (the thread's core), .tokenizer, .metrics and .in_flight. None when the server
    # serves only speech models (those are in ``models``, each with its own runner).
    engine: AsyncEngine | AsyncEmbedder | None
    loaded: LoadedModel | None
    settings: ServerSettings
    reasoning_parser_cls: type | None = None
    tool_parser_cls: type | None = None
    started_at: float = 0.0
    mcp: Any = None  # the McpHost (mcp_host/) when serving with --mcp-config
    responses: ResponsesStore = field(default_factory=ResponsesStore)  # stored Responses (LRU, in memory)

    models: list[ServedModel] = field(default_factory=list)  # in CLI order; the first is "default"
    device: Any = None  # core.device_turns.DeviceTurns the engines share (several models), else None

    def __post_init__(self) -> None:
        if not self.models and self.engine is not None:  # one LLM, built the single-model way
            self.models = [ServedModel(self.settings.served_model_name, self.loaded.kind if self.loaded else "llm",
                                       self.loaded, self.engine, self.settings.aliases,
                                       self.settings.model_aliases, state=self)]

    def primary_states(self) -> list["ServerState"]:
        """The ServerState of every LLM and embedding model, in order."""
        return [m.state for m in self.models if m.state is not None]

    def find(self, name: str | None) -> ServedModel | None:
        """The model a request names (None or "default": the first served)."""
        if name is None or name == "default":
            return self.models[0] if self.models else None
        return next((m for m in self.models if m.answers_to(name)), None)

    def model_for(self, name: str | None, kinds: tuple[str, ...]) -> ServedModel | None:
        """The named model if it is of one of ``kinds``; None if no model has that name;
        ``WrongKind`` if it has another kind. With no name, the first model of the kinds
        ("default" is the first model of all)."""
        if name is None:
            return next((m for m in self.models if m.kind in kinds), None)
        found = self.find(name)
        if found is not None and found.kind not in kinds:
            raise WrongKind(found, kinds)
        return found

    def accepts_model(self, name: str | None) -> bool:
        found = self.find(name)
        return found is not None and found.kind in ("llm", "mllm", "embedding")

    def names(self) -> str:
        return ", ".join(f"`{m.name}` ({m.kind})" for m in self.models)
