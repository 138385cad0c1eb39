"""The plugin contract: every hook a vllm-mlx plugin may implement.

A plugin is a module (or any object) with functions marked ``@hookimpl``.
vllm-mlx finds plugins in three places, in this order:

1. the built-ins (``vllm_mlx/plugins/builtin/``), registered exactly like yours;
2. installed packages that declare an entry point in the ``vllm_mlx`` group::

       [project.entry-points.vllm_mlx]
       my_plugin = "my_package.plugin"

3. ``vllm-mlx serve --plugin dotted.module`` or ``--plugin path/to/file.py``.

Each hook below is a *registration* hook: it is called once at start-up and
returns what the plugin provides. All results are collected (no hook stops at
the first result). When two plugins register the same name, the one loaded
later wins and a warning names both, so an installed plugin can replace a
built-in parser. ``vllm-mlx plugins`` lists every plugin and what it provides.

The types returned are defined in ``vllm_mlx.plugins.interfaces``. A minimal
plugin::

    from vllm_mlx.plugins import hookimpl
    from vllm_mlx.plugins.interfaces import ReasoningParser

    class Shouty(ReasoningParser):
        name = "shouty"
        def feed(self, text):
            return "", text.upper()

    @hookimpl
    def register_reasoning_parsers():
        return [Shouty]
"""

from __future__ import annotations

import pluggy

from .interfaces import CachePolicy, ModelLoader, ReasoningParser, ToolParser

PROJECT = "vllm_mlx"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_model_loaders() -> list[ModelLoader]:
    """Return ``ModelLoader`` instances.

    Called at start-up. To load a model, vllm-mlx asks every loader, highest
    ``priority`` first, ``detect(path, config)``; the first that says yes
    loads it and returns a ``LoadedModel`` declaring its kind (llm, mllm, stt,
    tts or embedding). The built-in ``mlx-lm`` loader (priority 0) takes any model type
    mlx-lm knows; family loaders use a higher priority to adjust loading or to
    name default parsers. With ``--runner pooling`` only ``embedding`` loaders
    are asked, through ``accepts`` (by default the same as ``detect``); with
    ``--runner generate`` embedding loaders are skipped. An embedding loader's
    ``LoadedModel.model`` is an ``EmbeddingModel``.
    """


@hookspec
def register_reasoning_parsers() -> list[type[ReasoningParser]]:
    """Return ``ReasoningParser`` subclasses, each with a unique ``name``.

    Called at start-up. ``--reasoning-parser NAME`` selects one (``none`` turns
    the family default off); the server creates one instance per generated
    sequence. A parser implements vLLM's pair (``extract_reasoning`` for a
    whole reply, ``extract_reasoning_streaming`` per streamed step) or
    vllm-mlx's (``feed``/``finish``); the base class adapts either to the
    other. Streams go through ``feed``/``finish``, non-streaming replies
    through ``extract_reasoning``. The reasoning part is returned as
    ``reasoning`` and ``reasoning_content``. Not used under a structured-output
    grammar (the reply is constrained from its first token).
    """


@hookspec
def register_tool_parsers() -> list[type[ToolParser]]:
    """Return ``ToolParser`` subclasses, each with a unique ``name``.

    Called at start-up. ``--tool-call-parser NAME`` selects one; with none
    named, the server picks the parser whose ``template_markers`` all occur in
    the model's chat template (the most specific wins), else the loader's
    default. It reads requests that send ``tools`` with ``tool_choice`` auto,
    one instance per sequence. A parser implements vLLM's pair
    (``extract_tool_calls`` -> ``ExtractedToolCalls``,
    ``extract_tool_calls_streaming`` -> ``DeltaMessage`` of ``ToolCallDelta``
    pieces) or vllm-mlx's (``feed``/``finish``, returning ``ToolCallDelta``
    pieces or whole ``ToolCall`` objects); the base class adapts either to the
    other. Streams go through ``feed``/``finish`` and reach the client as
    OpenAI deltas (a call's first piece carries its index, id and name, later
    pieces argument fragments); non-streaming replies go through
    ``extract_tool_calls``. Markup that is no valid call should come back as
    content. ``parsers/markup_tools.py`` holds the base the built-ins share.
    """


@hookspec
def register_cache_policies() -> list[type[CachePolicy]]:
    """Return ``CachePolicy`` subclasses, each with a unique ``name``.

    Called at start-up. ``--cache-policy NAME`` selects the policy the prefix
    cache consults when it keeps and evicts cached prompt blocks.
    """
