"""GET /v1/models"""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
from litestar import Request, Response, get

from ..errors import APIError
from ..schemas.common import ModelCard, ModelList
from ..state import ServedModel
from .common import server_state


def _cards(request: Request) -> list[ModelCard]:
    """Every served model, in order, each followed by its plain (non-glob) ``--model-alias`` names
    as cards of their own: Claude Code lists only ids that start with ``claude`` from a gateway's
    /v1/models."""
    state = server_state(request)
    created = int(state.started_at)
    cards = []
    for m in state.models:
        cards.append(_card(state, m, m.name, created))
        cards += [_card(state, m, a, created) for a in m.patterns if not any(c in a for c in "*?[")]
    return cards


def _card(state, m: ServedModel, name: str, created: int) -> ModelCard:
    demo = m.loaded is not None and m.loaded.is_demo
    description = "vllm-mlx demo model: a tiny network trained on a few scripted conversations, " \
                  "not a real assistant" if demo else None
    return ModelCard(id=name, created=created, root=str(m.loaded.path or "") if m.loaded else None,
                     display_name=name, kind=m.kind, model_type=m.kind,
                     created_at=datetime.fromtimestamp(created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     max_model_len=m.state.settings.max_model_len if m.state is not None else None,
                     description=description)


@get("/v1/models")
async def list_models(request: Request) -> Response:
    cards = _cards(request)
    body = ModelList(data=cards, first_id=cards[0].id if cards else None, last_id=cards[-1].id if cards else None)
    return Response(content=msgspec.json.encode(body), media_type="application/json")


@get("/v1/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> Response:
    state = server_state(request)
    # the path converter keeps the leading "/"; an absolute-path alias needs it
    found = state.find(model_id) or state.find(model_id[1:])
    if found is not None:
        card = _card(state, found, found.name, int(state.started_at))
        return Response(content=msgspec.json.encode(card), media_type="application/json")
    raise APIError(404, f"The model `{model_id}` does not exist.", param="model", code="model_not_found")
