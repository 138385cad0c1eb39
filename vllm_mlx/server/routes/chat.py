"""POST /v1/chat/completions"""

from __future__ import annotations


from litestar import Request, Response, post
from litestar.response import Stream

from ..adapters.chat import complete_chat, stream_chat, to_chat_request
from ..pipeline import load_media, prepare, reads_images
from ..schemas.chat import ChatCompletionRequest
from ..streaming import SSE_HEADERS
from .common import GENERATIVE, check_model, decode_body, server_state, unless_disconnected


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request) -> Response:
    state = server_state(request)
    req = await decode_body(request, ChatCompletionRequest)
    state = check_model(state, req.model, GENERATIVE)
    if req.tools and any(isinstance(t, dict) and t.get("type") == "mcp" for t in req.tools):
        from ...mcp_host.loop import mcp_chat  # MCP tools: the server runs the tool loop

        return await mcp_chat(request, state, req)
    chat = to_chat_request(req, vision=reads_images(state))
    await load_media(state, chat)
    gen = await prepare(state, chat).start()
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return Stream(stream_chat(gen, include_usage), media_type="text/event-stream", headers=SSE_HEADERS)
    return await unless_disconnected(request, complete_chat(gen))
