"""What the routes share: the engine front, the model, names and settings."""

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


@dataclass
class ServerState:
    # the model's engine front: AsyncEngine (generation) or AsyncEmbedder (kind "embedding");
    # both have .engine (the thread's core), .tokenizer, .metrics and .in_flight
    engine: AsyncEngine | AsyncEmbedder
    loaded: LoadedModel
    settings: ServerSettings
    reasoning_parser_cls: type | None = None
    tool_parser_cls: type | None = None
    started_at: float = 0.0
    mcp: Any = None  # the McpHost (mcp_host/) when serving with --mcp-config
    responses: ResponsesStore = field(default_factory=ResponsesStore)  # stored Responses (LRU, in memory)

    def accepts_model(self, name: str | None) -> bool:
        s = self.settings
        return name is None or name == "default" or name == s.served_model_name or name in s.aliases \
            or any(fnmatchcase(name, pattern) for pattern in s.model_aliases)
