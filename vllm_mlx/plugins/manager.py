"""Finds, loads and queries plugins: built-ins, entry points, ``--plugin``."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .builtin import BUILTIN_MODULES

log = logging.getLogger("vllm_mlx.plugins")

HOOKS = {
    "model_loaders": "register_model_loaders",
    "reasoning_parsers": "register_reasoning_parsers",
    "tool_parsers": "register_tool_parsers",
    "cache_policies": "register_cache_policies",
}


class PluginError(RuntimeError):
    """A plugin could not be loaded or gave something unusable; the message names it."""


@dataclass
class PluginInfo:
    name: str
    source: str  # "builtin", "entry point", "--plugin"
    provides: dict[str, list[str]] = field(default_factory=dict)


class PluginManager:
    def __init__(self, load_entry_points: bool = True, extra: list[str] | tuple[str, ...] = ()):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._sources: dict[str, str] = {}
        for module_name in BUILTIN_MODULES:
            self._register(importlib.import_module(module_name), module_name.rsplit(".", 1)[-1], "builtin")
        if load_entry_points:
            self._load_entry_points()
        for spec in extra:
            self.load_plugin(spec)
        self._check()
        self._registry = self._collect()

    # -- loading -----------------------------------------------------------
    def _register(self, plugin: Any, name: str, source: str) -> None:
        if self.pm.get_plugin(name) is not None:
            log.warning("plugin %r is registered already; ignoring the second copy", name)
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validates hook names and signatures
            raise PluginError(f"plugin {name!r} ({source}) is not a valid vllm-mlx plugin: {exc}") from exc
        self._sources[name] = source

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} (entry point {ep.value}) failed to load: {type(exc).__name__}: {exc}"
                ) from exc
            self._register(plugin, ep.name, "entry point")

    def load_plugin(self, spec: str) -> None:
        """Load a plugin from a dotted module name or a path to a .py file."""
        try:
            module = _import_spec(spec)
        except Exception as exc:
            raise PluginError(f"plugin {spec!r} (--plugin) failed to load: {type(exc).__name__}: {exc}") from exc
        self._register(module, module.__name__, "--plugin")
        if hasattr(self, "_registry"):
            self._check()
            self._registry = self._collect()

    def _check(self) -> None:
        """A @hookimpl whose name is no hook (a typo) is an error, not silence."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) if exc.plugin is not None else "?"
            raise PluginError(f"plugin {name!r}: {exc}") from exc

    # -- queries -----------------------------------------------------------
    def _collect(self) -> dict[str, dict[str, tuple[Any, str]]]:
        """Call every registration hook once per plugin; remember who gave what."""
        registry: dict[str, dict[str, tuple[Any, str]]] = {kind: {} for kind in HOOKS}
        self._provides: dict[str, dict[str, list[str]]] = {}
        # pluggy knows which plugin gave each hook implementation; calling them one by
        # one (in load order) lets us say who provides what and let later ones win.
        impls = {kind: {impl.plugin_name: impl.function
                        for impl in getattr(self.pm.hook, hook_name).get_hookimpls()}
                 for kind, hook_name in HOOKS.items()}
        for name in self._sources:
            provided: dict[str, list[str]] = {}
            for kind, hook_name in HOOKS.items():
                impl = impls[kind].get(name)
                if impl is None:
                    continue
                try:
                    items = list(impl() or [])
                except Exception as exc:
                    raise PluginError(f"plugin {name!r}: {hook_name}() failed: {type(exc).__name__}: {exc}") from exc
                for item in items:
                    item_name = getattr(item, "name", "") or ""
                    if not item_name:
                        raise PluginError(f"plugin {name!r}: {hook_name}() returned {item!r} without a name")
                    previous = registry[kind].get(item_name)
                    if previous is not None and previous[1] != name:
                        log.warning("%s %r from plugin %r replaces the one from %r", kind, item_name, name, previous[1])
                    registry[kind][item_name] = (item, name)
                    provided.setdefault(kind, []).append(item_name)
            self._provides[name] = provided
        return registry

    def plugins(self) -> list[PluginInfo]:
        return [PluginInfo(name, self._sources[name], self._provides.get(name, {})) for name in self._sources]

    def model_loaders(self) -> list[Any]:
        loaders = [item for item, _ in self._registry["model_loaders"].values()]
        return sorted(loaders, key=lambda loader: -getattr(loader, "priority", 0))

    def reasoning_parser(self, name: str) -> type:
        return self._lookup("reasoning_parsers", name, "reasoning parser")

    def tool_parser(self, name: str) -> type:
        return self._lookup("tool_parsers", name, "tool-call parser")

    def cache_policy(self, name: str) -> type:
        return self._lookup("cache_policies", name, "cache policy")

    def detect_tool_parser(self, chat_template: str | None) -> str | None:
        """The tool parser whose ``template_markers`` all occur in ``chat_template``;
        when several match, the one with the most marker text (the most specific)."""
        if not chat_template:
            return None
        best, best_score = None, 0
        for name, (cls, _) in sorted(self._registry["tool_parsers"].items()):
            markers = tuple(getattr(cls, "template_markers", ()) or ())
            score = sum(len(m) for m in markers)
            if markers and score > best_score and all(m in chat_template for m in markers):
                best, best_score = name, score
        return best

    def cache_policy_for(self, name: str, model: Any, config: dict) -> Any:
        """An instance of the policy ``name``, or for ``auto`` the highest-priority one
        that applies to this model."""
        if name != "auto":
            return self.cache_policy(name)()
        policies = [cls() for cls, _ in self._registry["cache_policies"].values()]
        fitting = [p for p in policies if p.applies(model, config)]
        if not fitting:
            raise PluginError("no cache policy applies to this model; name one with --cache-policy")
        return max(fitting, key=lambda p: p.priority)

    def names(self, kind: str) -> list[str]:
        return sorted(self._registry[kind])

    def _lookup(self, kind: str, name: str, label: str):
        entry = self._registry[kind].get(name)
        if entry is None:
            known = ", ".join(self.names(kind)) or "none"
            raise PluginError(f"unknown {label} {name!r}; available: {known}")
        return entry[0]


def _import_spec(spec: str) -> ModuleType:
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"no such plugin file: {spec}")
        mod_name = f"vllm_mlx_plugin_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        loader_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)
