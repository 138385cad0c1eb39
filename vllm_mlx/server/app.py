"""Build the Litestar application around a running engine."""

from __future__ import annotations

import time

from litestar import Litestar
from litestar.config.cors import CORSConfig

from .auth import api_key_middleware
from .errors import EXCEPTION_HANDLERS
from .routes.chat import chat_completions
from .routes.common import MAX_BODY
from .routes.completions import completions
from .routes.embeddings import embeddings
from .routes.health import health, metrics, root, root_head
from .routes.mcp import MCP_ROUTES
from .routes.messages import count_tokens, messages
from .routes.speech import speech, upload_voice, voices
from .routes.transcriptions import transcriptions, translations
from .routes.models import get_model, list_models
from .routes.responses import RESPONSES_ROUTES
from .routes.tokenize import detokenize, tokenize
from .kinds import reject_wrong_kind
from .state import ServerState


def create_app(state: ServerState) -> Litestar:
    state.started_at = state.started_at or time.time()
    middleware = [api_key_middleware(state.settings.api_key)] if state.settings.api_key else []

    async def on_startup() -> None:
        if state.mcp is not None:
            state.mcp.start()  # connects in the background: a slow or broken MCP server never delays serving

    async def stop_mcp() -> None:
        if state.mcp is not None:
            await state.mcp.stop()  # every stdio child is closed, then terminated if it lingers

    def on_shutdown() -> None:
        for model in state.models:
            if model.runner is state.engine:
                state.engine.engine.shutdown()
            else:
                model.runner.shutdown()

    app = Litestar(
        route_handlers=[chat_completions, completions, messages, count_tokens, list_models, get_model, health,
                        metrics, root, root_head, embeddings, tokenize, detokenize, *MCP_ROUTES, transcriptions,
                        translations, speech, voices, upload_voice, *RESPONSES_ROUTES],
        before_request=reject_wrong_kind,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=middleware,
        cors_config=CORSConfig(allow_origins=list(state.settings.allowed_origins))
        if state.settings.allowed_origins else None,
        on_startup=[on_startup],
        on_shutdown=[stop_mcp, on_shutdown],
        openapi_config=None,
        request_max_body_size=MAX_BODY,
        debug=False,
    )
    app.state.server = state
    return app
