"""Which routes a model kind serves: an embedding model answers the generation
routes with a clear 400 instead of failing inside them."""

from __future__ import annotations

from litestar import Request

from .errors import bad_request

GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/responses")


async def reject_wrong_kind(request: Request) -> None:
    """Litestar ``before_request`` hook (runs after routing, so unknown paths stay 404). With a
    generative model served too, the route's ``check_model`` answers by the requested model."""
    state = request.app.state.server
    generative = any(m.kind in ("llm", "mllm") for m in state.models)
    if not generative and state.loaded is not None and state.loaded.kind == "embedding" \
            and request.url.path.startswith(GENERATION_PATHS):
        raise bad_request(f"The model `{state.settings.served_model_name}` is an embedding model: it serves "
                          f"/v1/embeddings (and /tokenize, /detokenize), not {request.url.path}. Serve a chat model "
                          "for generation.", param="model", code="model_not_supported")
    return None
