"""vLLM's POST /tokenize and POST /detokenize, for every model kind with a tokenizer."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, post

from ..adapters.chat import to_chat_request
from ..errors import bad_request
from ..pipeline import load_media, reads_images, render_prompt
from ..schemas.chat import ChatCompletionRequest
from ..schemas.tokenize import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse
from ..state import ServerState
from .common import check_model, decode_body, server_state


def _tokenizer(state: ServerState) -> Any:
    tokenizer = state.loaded.tokenizer
    if tokenizer is None:
        raise bad_request(f"The model `{state.settings.served_model_name}` ({state.loaded.kind}) has no tokenizer",
                          param="model")
    return tokenizer


@post("/tokenize", status_code=200)
async def tokenize(request: Request) -> Response:
    state = server_state(request)
    req = await decode_body(request, TokenizeRequest)
    state = check_model(state, req.model)
    tokenizer = _tokenizer(state)
    if (req.prompt is None) == (req.messages is None):
        raise bad_request("Send either `prompt` (text) or `messages` (a chat), not both or neither",
                          param="prompt")
    if req.prompt is not None:
        add_special = True if req.add_special_tokens is None else req.add_special_tokens
        ids = list(tokenizer.encode(req.prompt, add_special_tokens=add_special))
    else:
        if req.add_special_tokens:
            raise bad_request("add_special_tokens applies to `prompt`; for `messages` the chat template adds "
                              "the special tokens", param="add_special_tokens")
        if req.continue_final_message and req.add_generation_prompt:
            raise bad_request("continue_final_message and add_generation_prompt cannot both be true",
                              param="continue_final_message")
        chat = ChatCompletionRequest(messages=req.messages, tools=req.tools,
                                     chat_template_kwargs=req.chat_template_kwargs,
                                     add_generation_prompt=req.add_generation_prompt,
                                     continue_final_message=req.continue_final_message)
        chat_req = to_chat_request(chat, vision=reads_images(state))
        await load_media(state, chat_req)  # image placeholders expanded, as generation sees them
        ids = render_prompt(state, chat_req)  # the very prompt generation would use
    strs = list(tokenizer.convert_ids_to_tokens(ids)) if req.return_token_strs else None
    body = TokenizeResponse(count=len(ids), max_model_len=state.settings.max_model_len, tokens=ids, token_strs=strs)
    return Response(content=msgspec.json.encode(body), media_type="application/json")


@post("/detokenize", status_code=200)
async def detokenize(request: Request) -> Response:
    state = server_state(request)
    req = await decode_body(request, DetokenizeRequest, free_form=False)
    state = check_model(state, req.model)
    tokenizer = _tokenizer(state)
    size = len(tokenizer)
    for t in req.tokens:
        if not 0 <= t < size:
            raise bad_request(f"Token id {t} is outside the vocabulary (0..{size - 1})", param="tokens")
    body = DetokenizeResponse(prompt=tokenizer.decode(req.tokens))
    return Response(content=msgspec.json.encode(body), media_type="application/json")
