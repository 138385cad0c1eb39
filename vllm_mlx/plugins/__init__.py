"""Plugin framework: the hook contract (``hookspecs``), the types plugins return
(``interfaces``), the manager that finds plugins, and the built-ins."""

from .hookspecs import hookimpl
from .manager import PluginError, PluginManager

__all__ = ["PluginError", "PluginManager", "hookimpl"]
