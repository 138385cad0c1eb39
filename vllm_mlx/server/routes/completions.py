"""POST /v1/completions"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from ...core.output import LogprobEntry
from ..errors import bad_request
from ..pipeline import ChatRequest, Generation, prepare
from ..schemas.common import Usage
from ..schemas.completions import Completion, CompletionChoice, CompletionLogprobs, CompletionRequest
from ..streaming import SSE_HEADERS, guarded_sse, sse
from .common import (
    GENERATIVE, check_capacity, check_model, check_prompt_ids, decode_body, now, server_state, unless_disconnected,
)


def _prompts(req: CompletionRequest, tokenizer, vocab_size: int) -> list[tuple[str | None, list[int]]]:
    p = req.prompt
    if isinstance(p, str):
        items: list = [p]
    elif p and all(isinstance(x, int) for x in p):
        items = [p]
    elif all(isinstance(x, (str, list)) for x in p):
        items = list(p)
    else:
        raise bad_request("prompt must be a string, a list of token ids, or a list of either", param="prompt")
    if not items:
        raise bad_request("prompt must not be empty", param="prompt")
    if len(items) > 64:
        raise bad_request("At most 64 prompts per request", param="prompt")
    out = []
    for item in items:
        if isinstance(item, str):
            ids = tokenizer.encode(item)
            out.append((item, ids))
        else:
            check_prompt_ids(item, vocab_size, "prompt")
            out.append((None, list(item)))
        if not out[-1][1]:
            raise bad_request("The prompt is empty", param="prompt")
    return out


@post("/v1/completions", status_code=200)
async def completions(request: Request) -> Response:
    state = server_state(request)
    req = await decode_body(request, CompletionRequest)
    state = check_model(state, req.model, GENERATIVE)
    if req.suffix:
        raise bad_request("suffix is not supported", param="suffix")
    engine = state.engine
    prompts = _prompts(req, engine.tokenizer, engine.engine.vocab_size)
    if req.stream and len(prompts) > 1:
        raise bad_request("Streaming supports a single prompt per request", param="prompt")
    requested = req.max_tokens if req.max_tokens is not None else 16
    jobs = [(text, prepare(state, ChatRequest(model=req.model, sampling=req, max_tokens=requested, prompt_ids=ids,
                                              logprobs=req.logprobs, stream=req.stream, id_prefix="cmpl")))
            for text, ids in prompts]
    check_capacity(state, sum(gen.params.n for _, gen in jobs))
    echoes = [(text if text is not None else engine.tokenizer.decode(gen.prompt_ids)) if req.echo else ""
              for text, gen in jobs]
    if req.stream:
        gen = await jobs[0][1].start(check=False)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return Stream(stream_completion(gen, include_usage, echoes[0]),
                      media_type="text/event-stream", headers=SSE_HEADERS)

    async def run(gen: Generation):
        await gen.start(check=False)
        return await gen.results()

    outcomes = await unless_disconnected(request, asyncio.gather(*(run(gen) for _, gen in jobs)))
    choices, prompt_tokens, completion_tokens, cached = [], 0, 0, 0
    for (_, gen), echo, results in zip(jobs, echoes, outcomes):
        prompt_tokens += gen.prompt_tokens
        completion_tokens += gen.output_tokens
        cached += gen.cached_tokens
        for r in results:
            choices.append(CompletionChoice(index=len(choices), text=echo + r.text,
                                            logprobs=_logprobs(r.logprobs, len(echo)),
                                            finish_reason=r.finish_reason, stop_reason=r.stop_reason))
    body = Completion(id=jobs[0][1].rid, created=now(), model=jobs[0][1].model, choices=choices,
                      usage=Usage.of(prompt_tokens, completion_tokens, cached))
    return Response(content=msgspec.json.encode(body), media_type="application/json")


def _logprobs(entries: list[LogprobEntry] | None, offset: int) -> CompletionLogprobs | None:
    if entries is None:
        return None
    out = CompletionLogprobs(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
    for e in entries:
        out.tokens.append(e.token)
        out.token_logprobs.append(e.logprob)
        out.top_logprobs.append({t: lp for t, lp, _ in e.top})
        out.text_offset.append(offset)
        offset += len(e.token)
    return out


async def stream_completion(gen: Generation, include_usage: bool, echo: str) -> AsyncIterator[bytes]:
    created = now()
    rid, model, n = gen.rid, gen.model, gen.params.n
    offsets = [len(echo)] * n
    events = gen.deltas()

    async def chunks() -> AsyncIterator[bytes]:
        if echo:
            for i in range(n):
                yield sse(Completion(id=rid, created=created, model=model,
                                     choices=[CompletionChoice(index=i, text=echo)]))
        async for d in events:
            logprobs = _logprobs(d.logprobs, offsets[d.index])
            if logprobs is not None:
                offsets[d.index] += sum(len(t) for t in logprobs.tokens)
            if not d.text and d.finish_reason is None and logprobs is None:
                continue
            yield sse(Completion(id=rid, created=created, model=model, choices=[CompletionChoice(
                index=d.index, text=d.text, logprobs=logprobs, finish_reason=d.finish_reason,
                stop_reason=d.stop_reason)]))
        if include_usage:
            yield sse(Completion(id=rid, created=created, model=model, choices=[],
                                 usage=Usage.of(gen.prompt_tokens, gen.output_tokens, gen.cached_tokens)))

    async for piece in guarded_sse(chunks(), events):
        yield piece
