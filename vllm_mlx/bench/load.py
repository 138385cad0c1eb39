"""``bench serve``: an HTTP load generator for any OpenAI-compatible chat server.

Each request streams ``/v1/chat/completions`` (or, with ``api="messages"``,
Anthropic's ``/v1/messages``; with ``api="responses"``, OpenAI's ``/v1/responses``)
greedily; at most ``conc`` are in
flight at once (a semaphore), over one pooled httpx client. Output tokens come
from the final usage chunk (``stream_options.include_usage``; ``message_delta.usage``
for messages; the terminal response's ``usage`` for responses); TTFT is the time
from sending the request to the first chunk that carries output, and the
inter-token latency is the gap between successive output chunks of a request.
Failed requests (non-200, an error event, a dropped or truncated stream) are
counted in ``errors`` and leave the token count; they never stop the run.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from .prompts import WARMUP_TEXT, make_texts
from .engine import WARMUP_SEED_OFFSET, WARMUP_TOKENS
from .stats import RequestStats, requests_for, summarize

OUTPUT_FIELDS = ("content", "reasoning_content", "reasoning", "tool_calls")


@dataclass
class ServeBenchConfig:
    url: str = "http://127.0.0.1:8000"
    model: str = "default"
    conc: list[int] = field(default_factory=lambda: [1, 5, 16, 64])
    requests: int = 0  # 0: max(2 * conc, 4) per level
    max_tokens: int = 128
    prompt_words: int = 64
    api_key: str | None = None
    label: str = ""
    seed: int = 1
    ignore_eos: bool = True
    timeout: float = 600.0  # seconds; httpx connect/read/write limit per request
    warmup: bool = True
    tools: bool = False  # send BENCH_TOOLS with every request (the server's tool parser then runs)
    api: str = "chat"  # "chat" (/v1/chat/completions), "messages" (Anthropic /v1/messages), "responses"


BENCH_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}
ANTHROPIC_OUTPUT = ("text_delta", "thinking_delta", "input_json_delta")
RESPONSES_OUTPUT = ("response.output_text.delta", "response.reasoning_text.delta",
                    "response.function_call_arguments.delta")
RESPONSES_END = ("response.completed", "response.incomplete")


def request_body(cfg: ServeBenchConfig, text: str, max_tokens: int) -> dict:
    if cfg.api == "responses":
        body = {"model": cfg.model, "input": text, "max_output_tokens": max_tokens, "temperature": 0.0,
                "stream": True}
        if cfg.ignore_eos:
            body["ignore_eos"] = True
        if cfg.tools:
            body["tools"] = [{"type": "function", **t["function"]} for t in BENCH_TOOLS]
        return body
    if cfg.api == "messages":
        body = {"model": cfg.model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                "temperature": 0.0, "stream": True}
        if cfg.ignore_eos:
            body["ignore_eos"] = True
        if cfg.tools:
            body["tools"] = [{"name": t["function"]["name"], "description": t["function"]["description"],
                              "input_schema": t["function"]["parameters"]} for t in BENCH_TOOLS]
        return body
    body = {
        "model": cfg.model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if cfg.ignore_eos:
        body["ignore_eos"] = True
    if cfg.tools:
        body["tools"] = BENCH_TOOLS
    return body


async def stream_one(client, url: str, body: dict, headers: dict) -> RequestStats:
    """Send one streaming chat request; never raises (failures land in ``.error``)."""
    stats = RequestStats(start=time.perf_counter())
    chunks = 0
    usage = None
    finished = False
    done = False
    try:
        async with client.stream("POST", url, json=body, headers=headers) as resp:
            if resp.status_code != 200:
                await resp.aread()
                stats.error = f"http {resp.status_code}"
                return stats
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                kind = event.get("type")
                if kind is not None and kind.startswith("response."):  # a Responses stream
                    if kind in RESPONSES_OUTPUT:
                        stats.mark(time.perf_counter())
                        chunks += 1
                    elif kind in RESPONSES_END:
                        finished = done = True
                        u = event["response"].get("usage") or {}
                        if isinstance(u.get("output_tokens"), int):
                            usage = {"completion_tokens": u["output_tokens"], "prompt_tokens": u.get("input_tokens")}
                        break
                    elif kind == "response.failed":
                        stats.error = "stream error: " + str(event["response"].get("error"))
                        return stats
                    continue
                if kind is not None:  # an Anthropic stream: content_block_delta, message_delta, ...
                    if kind == "error":
                        stats.error = "stream error: " + str(event.get("error"))
                        return stats
                    if kind == "content_block_delta" and (event.get("delta") or {}).get("type") in ANTHROPIC_OUTPUT:
                        stats.mark(time.perf_counter())
                        chunks += 1
                    elif kind == "message_delta":
                        finished = True
                        out = (event.get("usage") or {}).get("output_tokens")
                        usage = {"completion_tokens": out, "prompt_tokens": None} if isinstance(out, int) else None
                    elif kind == "message_stop":
                        done = True
                        break
                    continue
                if event.get("error"):
                    err = event["error"]
                    stats.error = "stream error: " + str(err.get("message", err) if isinstance(err, dict) else err)
                    return stats
                if event.get("usage"):
                    usage = event["usage"]
                carried = False
                for choice in event.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if any(delta.get(k) for k in OUTPUT_FIELDS):
                        carried = True
                    if choice.get("finish_reason"):
                        finished = True
                if carried:
                    stats.mark(time.perf_counter())
                    chunks += 1
    except Exception as exc:  # noqa: BLE001 - dropped connections, timeouts, bad JSON: all count as errors
        stats.error = type(exc).__name__
        return stats
    if not (finished or done):
        stats.error = "truncated stream"
        return stats
    if usage and isinstance(usage.get("completion_tokens"), int):
        stats.tokens = usage["completion_tokens"]
        stats.prompt_tokens = usage.get("prompt_tokens")
    else:
        stats.tokens = chunks
        stats.prompt_tokens = None
        stats.usage_missing = True
    return stats


async def run_level(client, cfg: ServeBenchConfig, conc: int, headers: dict) -> dict:
    url = cfg.url.rstrip("/") + PATHS[cfg.api]
    sem = asyncio.Semaphore(conc)
    if cfg.warmup:
        # One untimed round at this concurrency with prompts of the same length (other texts) and a few
        # tokens each, as `bench engine` does: the first use of a batch shape pays kernel compilation on a
        # GPU, which would otherwise land in the timed round's TTFT and throughput.
        warm_texts = [WARMUP_TEXT] + make_texts(conc, cfg.prompt_words, cfg.seed + WARMUP_SEED_OFFSET)

        async def warm_one(text: str) -> RequestStats:
            async with sem:
                return await stream_one(client, url, request_body(cfg, text, min(WARMUP_TOKENS, cfg.max_tokens)),
                                        headers)

        warm = await asyncio.gather(*(warm_one(t) for t in warm_texts))
        failed = [w for w in warm if w.error]
        if failed:
            print(f"warning: {len(failed)} warm-up request(s) failed ({failed[0].error})", file=sys.stderr,
                  flush=True)
    texts = make_texts(requests_for(conc, cfg.requests), cfg.prompt_words, cfg.seed)

    async def limited(text: str) -> RequestStats:
        async with sem:
            return await stream_one(client, url, request_body(cfg, text, cfg.max_tokens), headers)

    t0 = time.perf_counter()
    results = await asyncio.gather(*(limited(t) for t in texts))
    wall = time.perf_counter() - t0
    record = summarize(results, conc=conc, wall=wall, label=cfg.label, mode="serve")
    if any(r.usage_missing for r in results if r.ok):
        record["out_tokens_from"] = "chunks"  # the server sent no usage chunk
    return record


async def run_serve_bench(cfg: ServeBenchConfig, report: Callable[[dict], None]) -> list[dict]:
    """Run every concurrency level in order; ``report`` gets each level's record as it finishes."""
    import httpx

    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    top = max(cfg.conc)
    limits = httpx.Limits(max_connections=top + 4, max_keepalive_connections=top + 4)
    records = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(cfg.timeout), limits=limits) as client:
        for conc in cfg.conc:
            record = await run_level(client, cfg, conc, headers)
            report(record)
            records.append(record)
    return records


def serve_bench(cfg: ServeBenchConfig, report: Callable[[dict], None]) -> list[dict]:
    return asyncio.run(run_serve_bench(cfg, report))


async def run_api_compare(cfg: ServeBenchConfig, apis: list[str], rounds: int,
                          report: Callable[[dict], None]) -> list[dict]:
    """Each concurrency level ``rounds`` times over every API of ``apis`` against one server, the
    order rotating each round (the machine's drift then hits every API alike). After each level, a
    summary record: the median tok/s per API and each one's cost against the first (%)."""
    import dataclasses
    import statistics

    import httpx

    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    top = max(cfg.conc)
    limits = httpx.Limits(max_connections=top + 4, max_keepalive_connections=top + 4)
    summaries = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(cfg.timeout), limits=limits) as client:
        for conc in cfg.conc:
            seen: dict[str, list[dict]] = {api: [] for api in apis}
            for r in range(rounds):
                order = apis[r % len(apis):] + apis[:r % len(apis)]
                for api in order:
                    one = dataclasses.replace(cfg, api=api, label=f"{cfg.label or api}-{api}-r{r + 1}")
                    record = await run_level(client, one, conc, headers)
                    record.update(api=api, round=r + 1)
                    report(record)
                    seen[api].append(record)
            med = {api: statistics.median(x["tok_s"] for x in recs) for api, recs in seen.items()}
            itl = {api: statistics.median([x["itl_p50_ms"] for x in recs if x["itl_p50_ms"] is not None] or [0])
                   for api, recs in seen.items()}
            base = med[apis[0]]
            summary = {"summary": True, "conc": conc, "rounds": rounds, "label": cfg.label, "mode": "serve-compare",
                       "median_tok_s": {a: round(v, 1) for a, v in med.items()},
                       "median_itl_p50_ms": {a: round(v, 2) for a, v in itl.items()},
                       "errors": {a: sum(x["errors"] for x in recs) for a, recs in seen.items()},
                       f"cost_vs_{apis[0]}_pct": {a: round(100 * (1 - v / base), 2) if base else None
                                                  for a, v in med.items() if a != apis[0]}}
            report(summary)
            summaries.append(summary)
    return summaries


def api_compare(cfg: ServeBenchConfig, apis: list[str], rounds: int, report: Callable[[dict], None]) -> list[dict]:
    return asyncio.run(run_api_compare(cfg, apis, rounds, report))
