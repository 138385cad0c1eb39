"""GET /v1/models"""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get

from ..errors import APIError
from ..schemas.common import ModelCard, ModelList
from .common import server_state


def _cards(request: Request) -> list[ModelCard]:
    state = server_state(request)
    s = state.settings
    description = "vllm-mlx demo model: a tiny network trained on a few scripted conversations, " \
                  "not a real assistant" if state.loaded.is_demo else None
    return [ModelCard(id=s.served_model_name, created=int(state.started_at), root=str(state.loaded.path or ""),
                      max_model_len=s.max_model_len, description=description)]


@get("/v1/models")
async def list_models(request: Request) -> Response:
    return Response(content=msgspec.json.encode(ModelList(data=_cards(request))), media_type="application/json")


@get("/v1/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> Response:
    state = server_state(request)
    # the path converter keeps the leading "/"; an absolute-path alias needs it
    if state.accepts_model(model_id) or state.accepts_model(model_id[1:]):
        return Response(content=msgspec.json.encode(_cards(request)[0]), media_type="application/json")
    raise APIError(404, f"The model `{model_id}` does not exist.", param="model", code="model_not_found")
