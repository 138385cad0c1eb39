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
    loads it and returns a ``LoadedModel`` declaring its kind (llm, mllm, stt
    or tts). The built-in ``mlx-lm`` loader (priority 0) takes any model type
    mlx-lm knows; family loaders use a higher priority to adjust loading or to
    name default parsers.
    """


@hookspec
def register_reasoning_parsers() -> list[type[ReasoningParser]]:
    """Return ``ReasoningParser`` subclasses, each with a unique ``name``.

    Called at start-up. ``--reasoning-parser NAME`` selects one; the server
    creates one instance per generated sequence and feeds it the text as it is
    decoded. Its reasoning part becomes ``reasoning_content``.
    """


@hookspec
def register_tool_parsers() -> list[type[ToolParser]]:
    """Return ``ToolParser`` subclasses, each with a unique ``name``.

    Called at start-up. ``--tool-call-parser NAME`` selects one; it is used
    for requests that send ``tools`` (with ``--enable-auto-tool-choice``, or
    always for the demo model), one instance per sequence.
    """


@hookspec
def register_cache_policies() -> list[type[CachePolicy]]:
    """Return ``CachePolicy`` subclasses, each with a unique ``name``.

    Called at start-up. ``--cache-policy NAME`` selects the policy the prefix
    cache consults when it keeps and evicts cached prompt blocks.
    """
