"""The Python API behind ``vllm-mlx serve``: load a model, start an engine, build the app."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .core import AsyncEngine, Engine, EngineConfig
from .core.kv_budget import parse_memory
from .core.vision import VisionPrefill
from .plugins.interfaces import CacheOptions
from .model_source import load_model, sampling_defaults
from .plugins import PluginError, PluginManager
from .server import ServerSettings, ServerState, create_app
from .server.state import ServedModel
from .server.media import MediaSettings, media_limits

log = logging.getLogger("vllm_mlx")


@dataclass
class ServeOptions:
    model: str | None = None  # one model (the CLI passes ``models``)
    models: list[str] = field(default_factory=list)  # several: an LLM and speech models, in CLI order
    served_model_names: list[str] = field(default_factory=list)  # the same order as ``models``
    max_audio_bytes: int = 25 * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    served_model_name: str | None = None
    max_num_seqs: int = 64
    max_model_len: int | None = None
    prefill_step_size: int = 512
    prefill_batch_size: int | None = None  # prompts prefilled together in one step; None: by device
    engine_process: bool | None = None  # a text model's engine in a child process; None: on a GPU (core/engine_process.py)
    plugins: list[str] = field(default_factory=list)
    reasoning_parser: str | None = None
    tool_call_parser: str | None = None
    enable_auto_tool_choice: bool = False
    cache_policy: str = "auto"
    kv_cache_memory: str | None = None  # "8" GiB, "512MiB", "40%" of memory; None: the default share
    block_size: int = 32
    enable_prefix_caching: bool = True
    kv_cache_bits: int | None = None
    kv_cache_group_size: int = 64
    sliding_window: int | None = None
    prefix_cache_dir: str | None = None
    shutdown_timeout: float = 30.0  # seconds in-flight requests get to finish on SIGTERM/SIGINT
    request_timeout: float | None = None  # seconds; a request still unfinished then ends with a 408
    max_queue: int = 1024
    allowed_origins: list[str] = field(default_factory=list)
    default_chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    model_aliases: list[str] = field(default_factory=list)  # "NAME=SERVED", NAME may be a glob
    ping_interval: float = 10.0
    log_level: str = "info"
    runner: str = "auto"  # vLLM's --runner: auto, generate, pooling (embeddings)
    mcp_config: str | None = None  # an mcp.json file: MCP servers the server connects to (mcp_host/)
    mcp_options: Any = None  # mcp_host.HostOptions; None: its defaults
    mcp_audit_log: str | None = None  # also append one JSON line per MCP tool call to this file
    limit_mm_per_prompt: dict[str, int] = field(default_factory=dict)  # {"image": 4}; see server.media
    allowed_media_domains: list[str] = field(default_factory=list)  # hosts image URLs may name; empty: any
    allowed_local_media_path: str | None = None  # file:// URLs only under this folder; None: no local files
    media_fetch_timeout: float = 10.0  # seconds per URL
    media_max_bytes: int = 20 << 20  # per fetched or inline medium
    responses_store_dir: str | None = None  # keep stored Responses here across restarts; None: memory only
    responses_store_max: int = 1000  # the most stored Responses (least recently used are dropped)
    responses_store_ttl: float = 0.0  # seconds a stored Response is kept; 0: until evicted


SERVED_KINDS = ("llm", "mllm", "embedding", "stt", "tts")
PRIMARY_KINDS = ("llm", "mllm", "embedding")  # served through ``ServerState.engine`` (one per server for now)


def build_state(opts: ServeOptions, plugins: PluginManager | None = None) -> ServerState:
    """Load plugins and every model, start their engines; returns what ``create_app`` needs."""
    mcp = _mcp_host(opts)  # a bad config fails before the model loads
    plugins = plugins or PluginManager(extra=opts.plugins)
    specs = list(opts.models) or [opts.model]
    names = list(opts.served_model_names) or ([opts.served_model_name] if opts.served_model_name else [])
    if len(names) > len(specs):
        raise PluginError(f"{len(names)} --served-model-name for {len(specs)} models: give at most one per model")
    llm_state: ServerState | None = None
    served: list[ServedModel] = []
    try:
        for i, spec in enumerate(specs):
            loaded = load_model(spec, plugins, kinds=SERVED_KINDS, runner=opts.runner,
                                lazy_kinds=("llm",) if use_engine_process(opts) else ())
            name = names[i] if i < len(names) else None
            if loaded.kind in PRIMARY_KINDS:
                if llm_state is not None:
                    raise PluginError("one server serves one LLM or embedding model for now (with any speech "
                                      "models); serve the others separately")
                llm_state = _build_primary(opts, plugins, loaded, spec, name, mcp)
                served.append(llm_state.models[0])
            else:
                served.append(_build_speech(loaded, spec, name))
            if [m.name for m in served].count(served[-1].name) > 1:
                raise PluginError(f"two models are served as {served[-1].name!r}: name them with "
                                  "--served-model-name")
    except BaseException:
        for m in served:  # stop the engines already started
            if m.kind in PRIMARY_KINDS:
                m.runner.engine.shutdown()
            else:
                m.runner.shutdown()
        raise
    if llm_state is None:
        if mcp is not None:
            raise PluginError("--mcp-config needs a generative model (the model calls the tools); none is served")
        settings = ServerSettings(served_model_name=served[0].name, api_key=opts.api_key,
                                  allowed_origins=tuple(opts.allowed_origins))
        llm_state = ServerState(engine=None, loaded=None, settings=settings)
    llm_state.models = served
    llm_state.settings.max_audio_bytes = opts.max_audio_bytes
    llm_state.responses = _responses_store(opts)
    return llm_state


def _build_speech(loaded, spec: str | None, name: str | None) -> ServedModel:
    from .speech.engine import SpeechEngine

    name = name or spec or str(loaded.path)
    log.info("model %s (%s loader, %s)", name, loaded.loader, loaded.kind)
    aliases = tuple(a for a in {spec, str(loaded.path)} if a and a != name)
    return ServedModel(name=name, kind=loaded.kind, loaded=loaded, runner=SpeechEngine(name).start(),
                       aliases=aliases)


def _build_primary(opts: ServeOptions, plugins: PluginManager, loaded, spec: str | None,
                   served_name: str | None, mcp: Any = None) -> ServerState:
    name = served_name or ("vllm-mlx-demo" if loaded.is_demo and spec is None else (spec or str(loaded.path)))
    aliases = tuple(a for a in {spec, str(loaded.path)} if a and a != name)
    model_aliases = model_alias_names(opts.model_aliases, {name, "default", *aliases})
    if loaded.kind == "embedding":
        import dataclasses

        from .serving_embeddings import build_embedding_state

        if mcp is not None:
            raise PluginError("--mcp-config needs a generative model (the model calls the tools); "
                              f"{spec} is an embedding model")
        state = build_embedding_state(dataclasses.replace(opts, model=spec, served_model_name=served_name), loaded)
        state.settings.model_aliases = model_aliases
        state.models[0].patterns = model_aliases
        return state
    reasoning = opts.reasoning_parser or loaded.default_reasoning_parser
    tools = opts.tool_call_parser or plugins.detect_tool_parser(chat_template_text(loaded.tokenizer)) \
        or loaded.default_tool_parser
    if opts.enable_auto_tool_choice and not tools:
        raise PluginError("--enable-auto-tool-choice needs --tool-call-parser NAME (this model family has no "
                          f"default); available: {', '.join(plugins.names('tool_parsers'))}")
    # "none" turns a parser off explicitly (tools then reach the model and its reply comes back unparsed)
    reasoning_cls = plugins.reasoning_parser(reasoning) if reasoning and reasoning != "none" else None
    tool_cls = plugins.tool_parser(tools) if tools and tools != "none" else None
    policy = plugins.cache_policy_for(opts.cache_policy, loaded.model, loaded.config)
    cache_options = CacheOptions(kv_bits=opts.kv_cache_bits, kv_group_size=opts.kv_cache_group_size,
                                 sliding_window=opts.sliding_window)
    try:
        parse_memory(opts.kv_cache_memory)
        policy.make_cache(loaded.model, cache_options)  # a bad combination fails here, with its reason
    except ValueError as exc:
        raise PluginError(str(exc)) from None
    try:
        limits = media_limits(opts.limit_mm_per_prompt)
    except ValueError as exc:
        raise PluginError(str(exc)) from None
    context = loaded.context_length or 4096
    max_model_len = min(opts.max_model_len or context, context) if opts.max_model_len else context
    vision = VisionPrefill(loaded.model, opts.prefill_step_size) if loaded.kind == "mllm" else None
    engine_settings = dict(
        max_num_seqs=opts.max_num_seqs, prefill_step_size=opts.prefill_step_size,
        prefill_batch_size=opts.prefill_batch_size,
        block_size=opts.block_size, kv_cache_memory=opts.kv_cache_memory,
        prefix_caching=opts.enable_prefix_caching,
        prefix_cache_dir=opts.prefix_cache_dir,
        request_timeout=opts.request_timeout or None,
        cache_fingerprint=_fingerprint(loaded, policy.name, cache_options),
    )
    if use_engine_process(opts) and (loaded.kind == "llm" or opts.engine_process):
        engine = _engine_process(opts, loaded, policy.name, cache_options, engine_settings)
    else:
        engine = Engine(loaded.model, loaded.tokenizer, vision=vision, config=EngineConfig(
            make_cache=lambda: policy.make_cache(loaded.model, cache_options), **engine_settings))
    try:
        engine.start()
    except RuntimeError as exc:  # e.g. a KV quantization the model's head size does not allow
        raise PluginError(str(exc)) from None
    if engine.kv.capacity_tokens < max_model_len:
        log.warning("the KV cache holds %d tokens, less than the context of %d: limiting the context to it "
                    "(raise --kv-cache-memory for more)", engine.kv.capacity_tokens, max_model_len)
        max_model_len = engine.kv.capacity_tokens
    settings = ServerSettings(
        served_model_name=name,
        api_key=opts.api_key,
        max_model_len=max_model_len,
        reasoning_parser=reasoning,
        tool_call_parser=tools,
        cache_policy=policy.name,
        max_num_seqs=opts.max_num_seqs,
        max_queue=opts.max_queue,
        allowed_origins=tuple(opts.allowed_origins),
        default_chat_template_kwargs=dict(opts.default_chat_template_kwargs),
        aliases=aliases,
        sampling_defaults=sampling_defaults(loaded.path),
        model_aliases=model_aliases,
        ping_interval=opts.ping_interval,
        media=MediaSettings(
            limits=limits,
            allowed_domains=tuple(d.lower() for d in opts.allowed_media_domains),
            local_root=opts.allowed_local_media_path,
            timeout=opts.media_fetch_timeout, max_bytes=opts.media_max_bytes),
    )
    if loaded.is_demo:
        log.warning("serving the built-in DEMO model %s: a tiny network trained on a few scripted "
                    "conversations, not a real assistant. Pass a model to serve a real one.", loaded.path)
    log.info("model %s (%s loader), context %d, reasoning parser %s, tool parser %s",
             name, loaded.loader, max_model_len, reasoning, tools)
    return ServerState(engine=AsyncEngine(engine), loaded=loaded, settings=settings,
                       reasoning_parser_cls=reasoning_cls, tool_parser_cls=tool_cls, mcp=mcp)


def _responses_store(opts: ServeOptions):
    from .server.responses_store import ResponsesStore

    try:
        return ResponsesStore(max_entries=opts.responses_store_max, ttl=opts.responses_store_ttl,
                              directory=opts.responses_store_dir)
    except OSError as exc:
        raise PluginError(f"--responses-store-dir {opts.responses_store_dir}: {exc.strerror or exc}") from None


def use_engine_process(opts: ServeOptions) -> bool:
    """``--engine-process`` as given, else on when MLX computes on a GPU (Apple silicon, CUDA), where the
    engine is host-bound and sharing one interpreter with the HTTP server costs throughput."""
    if opts.engine_process is not None:
        return opts.engine_process
    import mlx.core as mx

    return mx.default_device().type == mx.DeviceType.gpu


def _engine_process(opts: ServeOptions, loaded, policy_name: str, cache_options, settings: dict):
    """``--engine-process``: the engine runs in a child process that loads the model itself; this
    process keeps the tokenizer; its model was loaded lazily (weights never read) or is dropped here."""
    import functools
    import gc

    import mlx.core as mx

    from .core.engine import _vocab_size
    from .core.engine_process import EngineProcess

    if loaded.kind != "llm":
        raise PluginError(f"--engine-process runs text models (llm) for now; {loaded.path} is a {loaded.kind} model")
    factory = functools.partial(_engine_in_child, str(loaded.path), list(opts.plugins), opts.runner, policy_name,
                                cache_options, settings)
    vocab = _vocab_size(loaded.model, loaded.tokenizer)
    eos = set(getattr(loaded.tokenizer, "eos_token_ids", None) or [])
    loaded.model = None  # the child holds the weights; keep one copy in memory
    gc.collect()
    mx.clear_cache()
    return EngineProcess(factory, loaded.tokenizer, vocab, eos, log_level=opts.log_level)


def _engine_in_child(path: str, plugin_specs: list[str], runner: str, policy_name: str, cache_options,
                     settings: dict):
    """Runs in the engine process: load the model as the server did, build (not start) its engine."""
    plugins = PluginManager(extra=plugin_specs)
    loaded = load_model(path, plugins, kinds=("llm",), runner=runner)
    policy = plugins.cache_policy_for(policy_name, loaded.model, loaded.config)
    return Engine(loaded.model, loaded.tokenizer, config=EngineConfig(
        make_cache=lambda: policy.make_cache(loaded.model, cache_options), **settings))


def _mcp_host(opts: ServeOptions):
    """The MCP host for --mcp-config (not connected yet: the app starts it); raises McpConfigError."""
    from .mcp_host import HostOptions, McpConfig, McpHost, load_config
    from .mcp_host.audit import open_audit_file

    if not opts.mcp_config:
        if opts.mcp_options is None or not opts.mcp_options.allowed_urls:
            return None
        # --mcp-allowed-urls alone: no configured servers, only those Responses requests name
        if opts.mcp_audit_log:
            open_audit_file(opts.mcp_audit_log)
        return McpHost(McpConfig(servers={}), opts.mcp_options)
    config = load_config(opts.mcp_config)
    if opts.mcp_audit_log:
        open_audit_file(opts.mcp_audit_log)
    log.info("MCP config %s: servers %s", opts.mcp_config, ", ".join(config.servers) or "(none)")
    return McpHost(config, opts.mcp_options or HostOptions())


def model_alias_names(specs: list[str], served: set[str]) -> tuple[str, ...]:
    """``--model-alias NAME=SERVED`` (NAME may be a glob such as ``claude-*``) -> the NAME patterns.
    One model is served, so SERVED must name it (or be ``default``)."""
    names = []
    for spec in specs:
        name, sep, target = spec.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise PluginError(f"--model-alias {spec!r}: expected NAME=SERVED, e.g. 'claude-*=default'")
        if target.strip() not in served:
            raise PluginError(f"--model-alias {spec!r}: {target.strip()!r} is not the served model "
                              f"(use 'default' or one of: {', '.join(sorted(served))})")
        names.append(name.strip())
    return tuple(names)


def chat_template_text(tokenizer: Any) -> str | None:
    """The tokenizer's chat template as text (all named templates joined, when it has several)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return "\n".join(t for t in template.values() if isinstance(t, str))
    return template if isinstance(template, str) else None


def _fingerprint(loaded, policy: str, options: CacheOptions) -> str:
    """Names the weights and cache layout that stored prefix blocks belong to."""
    import hashlib
    import json

    files = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime))
                   for p in (loaded.path.glob("*.safetensors") if loaded.path else []))
    text = json.dumps([loaded.config, files, policy, options.kv_bits, options.kv_group_size, options.sliding_window],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def serve(opts: ServeOptions) -> None:
    import uvicorn

    if opts.host not in ("127.0.0.1", "localhost", "::1") and not opts.api_key:
        log.warning("serving on %s WITHOUT an API key: anyone who can reach this address can use the model. "
                    "Pass --api-key (or VLLM_MLX_API_KEY).", opts.host)
    state = build_state(opts)
    app = create_app(state)
    config = uvicorn.Config(app, host=opts.host, port=opts.port, log_level=opts.log_level, access_log=False,
                            timeout_graceful_shutdown=opts.shutdown_timeout)
    _graceful_server(config).run()


def _graceful_server(config):
    """uvicorn's server, except that a SIGTERM/SIGINT shutdown exits with status 0.

    On SIGTERM/SIGINT uvicorn stops accepting connections, lets in-flight requests
    finish for up to ``timeout_graceful_shutdown`` seconds, cancels the rest, runs
    the app's shutdown (the engine stops, the prefix cache is saved), then
    re-raises the signal so the process dies of it (status 143/130). A shutdown
    that went as planned is a success for a service manager, so we do not re-raise.
    """
    import uvicorn

    class GracefulServer(uvicorn.Server):
        def handle_exit(self, sig, frame):
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    return GracefulServer(config)
