"""A plugin that fails at import time."""

raise ImportError("this plugin is broken on purpose")
