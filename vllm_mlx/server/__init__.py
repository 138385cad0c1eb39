"""The HTTP server: OpenAI-compatible routes over the engine's public API."""

from .app import create_app
from .state import ServerSettings, ServerState

__all__ = ["ServerSettings", "ServerState", "create_app"]
