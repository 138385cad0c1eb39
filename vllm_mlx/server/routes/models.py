"""GET /v1/models"""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
from litestar import Request, Response, get

from ..errors import APIError
from ..schemas.common import ModelCard, ModelList
from .common import server_state


def _cards(request: Request) -> list[ModelCard]:
    """The served model, then each plain (non-glob) ``--model-alias`` name as a card of its own:
    Claude Code lists only ids that start with ``claude`` from a gateway's /v1/models."""
    state = server_state(request)
    s = state.settings
    description = "vllm-mlx demo model: a tiny network trained on a few scripted conversations, " \
                  "not a real assistant" if state.loaded.is_demo else None
    created = int(state.started_at)
    names = [s.served_model_name] + [a for a in s.model_aliases if not any(c in a for c in "*?[")]
    return [ModelCard(id=name, created=created, root=str(state.loaded.path or ""), display_name=name,
                      created_at=datetime.fromtimestamp(created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      max_model_len=s.max_model_len, description=description,
                      model_type=state.loaded.kind) for name in names]


@get("/v1/models")
async def list_models(request: Request) -> Response:
    cards = _cards(request)
    body = ModelList(data=cards, first_id=cards[0].id if cards else None, last_id=cards[-1].id if cards else None)
    return Response(content=msgspec.json.encode(body), media_type="application/json")


@get("/v1/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> Response:
    state = server_state(request)
    # the path converter keeps the leading "/"; an absolute-path alias needs it
    if state.accepts_model(model_id) or state.accepts_model(model_id[1:]):
        return Response(content=msgspec.json.encode(_cards(request)[0]), media_type="application/json")
    raise APIError(404, f"The model `{model_id}` does not exist.", param="model", code="model_not_found")
