"""POST /v1/responses, GET and DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items
(OpenAI Responses). Finished responses with ``store`` (the default) are kept in the server's
bounded in-memory store (``responses_store.py``)."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.response import Stream

from ..adapters.responses import complete_response, stream_response
from ..adapters.responses_request import history, input_items, to_chat_request
from ..errors import APIError, bad_request
from ..pipeline import load_media, prepare, reads_images
from ..responses_store import StoredResponse
from ..schemas.responses import DeletedResponse, InputItemList, ResponseObject, ResponsesRequest
from ..streaming import SSE_HEADERS
from .common import GENERATIVE, check_model, decode_body, server_state, unless_disconnected


def _json(obj) -> Response:
    return Response(content=msgspec.json.encode(obj), media_type="application/json")


def _not_found(response_id: str) -> APIError:
    return APIError(404, f"Response with id '{response_id}' not found.", param="response_id", code="not_found")


@post("/v1/responses", status_code=200)
async def create_response(request: Request) -> Response:
    state = server_state(request)
    req = await decode_body(request, ResponsesRequest)
    state = check_model(state, req.model, GENERATIVE)
    past = history(state.responses, req.previous_response_id)
    items = input_items(req)

    def on_done(body: ResponseObject) -> None:
        if req.store:
            conversation = past + items + [msgspec.to_builtins(o) for o in body.output]
            state.responses.put(StoredResponse(response=body, input_items=items, conversation=conversation))

    if any(isinstance(t, dict) and t.get("type") == "mcp" for t in req.tools or []):
        from ...mcp_host.responses_loop import mcp_response  # MCP tools: the server runs the tool loop

        return await mcp_response(request, state, req, past, items, on_done)
    chat = to_chat_request(req, past + items, vision=reads_images(state))
    await load_media(state, chat)
    gen = await prepare(state, chat).start()

    # SSE is chosen by the body's `stream` (the SDK sends `Accept: application/json` either way)
    if req.stream:
        return Stream(stream_response(gen, req, on_done), media_type="text/event-stream", headers=SSE_HEADERS)
    return await unless_disconnected(request, complete_response(gen, req, on_done))


@get("/v1/responses/{response_id:str}")
async def retrieve_response(request: Request, response_id: str) -> Response:
    entry = server_state(request).responses.get(response_id)
    if entry is None:
        raise _not_found(response_id)
    return _json(entry.response)


@delete("/v1/responses/{response_id:str}", status_code=200)
async def delete_response(request: Request, response_id: str) -> Response:
    if not server_state(request).responses.delete(response_id):
        raise _not_found(response_id)
    return _json(DeletedResponse(id=response_id))


@get("/v1/responses/{response_id:str}/input_items")
async def list_input_items(request: Request, response_id: str) -> Response:
    entry = server_state(request).responses.get(response_id)
    if entry is None:
        raise _not_found(response_id)
    params = request.query_params
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request("order must be 'asc' or 'desc'", param="order")
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise bad_request("limit must be an integer from 1 to 100", param="limit")
    data = list(entry.input_items) if order == "asc" else list(reversed(entry.input_items))
    after = params.get("after")
    if after is not None:
        ids = [item.get("id") for item in data]
        if after not in ids:
            raise bad_request(f"after: no input item with id '{after}'", param="after")
        data = data[ids.index(after) + 1:]
    page = data[:limit]
    return _json(InputItemList(data=page, first_id=page[0]["id"] if page else None,
                               last_id=page[-1]["id"] if page else None, has_more=len(data) > limit))


RESPONSES_ROUTES = [create_response, retrieve_response, delete_response, list_input_items]
