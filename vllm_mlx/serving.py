"""The Python API behind ``vllm-mlx serve``: load a model, start an engine, build the app."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .core import AsyncEngine, Engine, EngineConfig
from .model_source import load_model, sampling_defaults
from .plugins import PluginError, PluginManager
from .server import ServerSettings, ServerState, create_app

log = logging.getLogger("vllm_mlx")


@dataclass
class ServeOptions:
    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    served_model_name: str | None = None
    max_num_seqs: int = 64
    max_model_len: int | None = None
    prefill_step_size: int = 512
    plugins: list[str] = field(default_factory=list)
    reasoning_parser: str | None = None
    tool_call_parser: str | None = None
    enable_auto_tool_choice: bool = False
    cache_policy: str = "lru"
    max_queue: int = 1024
    allowed_origins: list[str] = field(default_factory=list)
    default_chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    log_level: str = "info"


def build_state(opts: ServeOptions, plugins: PluginManager | None = None) -> ServerState:
    """Load plugins and the model, start the engine; returns what ``create_app`` needs."""
    plugins = plugins or PluginManager(extra=opts.plugins)
    loaded = load_model(opts.model, plugins, kinds=("llm",))
    reasoning = opts.reasoning_parser or loaded.default_reasoning_parser
    tools = opts.tool_call_parser or plugins.detect_tool_parser(chat_template_text(loaded.tokenizer)) \
        or loaded.default_tool_parser
    if opts.enable_auto_tool_choice and not tools:
        raise PluginError("--enable-auto-tool-choice needs --tool-call-parser NAME (this model family has no "
                          f"default); available: {', '.join(plugins.names('tool_parsers'))}")
    # "none" turns a parser off explicitly (tools then reach the model and its reply comes back unparsed)
    reasoning_cls = plugins.reasoning_parser(reasoning) if reasoning and reasoning != "none" else None
    tool_cls = plugins.tool_parser(tools) if tools and tools != "none" else None
    plugins.cache_policy(opts.cache_policy)  # fail at start-up on an unknown name
    context = loaded.context_length or 4096
    max_model_len = min(opts.max_model_len or context, context) if opts.max_model_len else context
    engine = Engine(loaded.model, loaded.tokenizer, EngineConfig(
        max_num_seqs=opts.max_num_seqs, prefill_step_size=opts.prefill_step_size,
    )).start()
    name = opts.served_model_name or (
        "vllm-mlx-demo" if loaded.is_demo and opts.model is None else (opts.model or str(loaded.path)))
    settings = ServerSettings(
        served_model_name=name,
        api_key=opts.api_key,
        max_model_len=max_model_len,
        reasoning_parser=reasoning,
        tool_call_parser=tools,
        cache_policy=opts.cache_policy,
        max_num_seqs=opts.max_num_seqs,
        max_queue=opts.max_queue,
        allowed_origins=tuple(opts.allowed_origins),
        default_chat_template_kwargs=dict(opts.default_chat_template_kwargs),
        aliases=tuple(a for a in {opts.model, str(loaded.path)} if a and a != name),
        sampling_defaults=sampling_defaults(loaded.path),
    )
    if loaded.is_demo:
        log.warning("serving the built-in DEMO model %s: a tiny network trained on a few scripted "
                    "conversations, not a real assistant. Pass a model to serve a real one.", loaded.path)
    log.info("model %s (%s loader), context %d, reasoning parser %s, tool parser %s",
             name, loaded.loader, max_model_len, reasoning, tools)
    return ServerState(engine=AsyncEngine(engine), loaded=loaded, settings=settings,
                       reasoning_parser_cls=reasoning_cls, tool_parser_cls=tool_cls)


def chat_template_text(tokenizer: Any) -> str | None:
    """The tokenizer's chat template as text (all named templates joined, when it has several)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return "\n".join(t for t in template.values() if isinstance(t, str))
    return template if isinstance(template, str) else None


def serve(opts: ServeOptions) -> None:
    import uvicorn

    if opts.host not in ("127.0.0.1", "localhost", "::1") and not opts.api_key:
        log.warning("serving on %s WITHOUT an API key: anyone who can reach this address can use the model. "
                    "Pass --api-key (or VLLM_MLX_API_KEY).", opts.host)
    state = build_state(opts)
    app = create_app(state)
    uvicorn.run(app, host=opts.host, port=opts.port, log_level=opts.log_level, access_log=False,
                timeout_graceful_shutdown=5)
