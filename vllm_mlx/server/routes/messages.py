"""POST /v1/messages, POST /v1/messages/count_tokens (Anthropic Messages; also with ``?beta=true``).

Errors on these routes leave in Anthropic's shape (``errors.wants_anthropic``)."""

from __future__ import annotations


import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from ..adapters.anthropic import complete_message, stream_message
from ..adapters.anthropic_request import to_chat_request
from ..pipeline import load_media, prepare, reads_images, render_prompt
from ..schemas.anthropic import CountTokensRequest, MessagesRequest, TokenCount
from ..streaming import SSE_HEADERS
from .common import GENERATIVE, check_model, decode_body, server_state, unless_disconnected


@post("/v1/messages", status_code=200)
async def messages(request: Request) -> Response:
    state = server_state(request)
    req = await decode_body(request, MessagesRequest)
    state = check_model(state, req.model, GENERATIVE)
    chat = to_chat_request(req, vision=reads_images(state))
    await load_media(state, chat)
    gen = await prepare(state, chat).start()
    # SSE is chosen by the body's `stream`: both SDKs send `Accept: application/json` either way
    if req.stream:
        return Stream(stream_message(gen, state.settings.ping_interval), media_type="text/event-stream",
                      headers=SSE_HEADERS)
    return await unless_disconnected(request, complete_message(gen))


@post("/v1/messages/count_tokens", status_code=200)
async def count_tokens(request: Request) -> Response:
    state = server_state(request)
    req = await decode_body(request, CountTokensRequest)
    state = check_model(state, req.model, GENERATIVE)
    chat = to_chat_request(req, vision=reads_images(state))
    await load_media(state, chat)  # images count as the tokens they expand to, as in generation
    ids = render_prompt(state, chat)
    return Response(content=msgspec.json.encode(TokenCount(input_tokens=len(ids))), media_type="application/json")
