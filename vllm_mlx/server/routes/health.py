"""GET /health, GET /metrics (Prometheus text, vLLM's metric names), and GET/HEAD / (a 200 for
clients that probe the base URL, as Claude Code does with ``HEAD /``)."""

from __future__ import annotations

import os
import time

import mlx.core as mx
import msgspec
from litestar import Request, Response, get, head

from ...core.metrics import Histogram
from ..state import ServedModel
from .common import server_state


@get("/")
async def root(request: Request) -> Response:
    body = {"name": "vllm-mlx", "model": server_state(request).settings.served_model_name}
    return Response(content=msgspec.json.encode(body), media_type="application/json")


@head("/")
async def root_head() -> None:
    return None


@get("/health")
async def health(request: Request) -> Response:
    state = server_state(request)
    models = [_model_health(m) for m in state.models]
    ok = all(m["state"] == "running" for m in models)
    first = state.models[0]
    body = {
        "status": "ok" if ok else "unavailable",
        "model": first.name,
        "kind": first.kind,
        "demo": bool(first.loaded and first.loaded.is_demo),
        "models": models,
    }
    if state.engine is not None:  # the LLM's details, as with one model
        core = state.engine.engine
        body.update({
            "reasoning_parser": state.settings.reasoning_parser,
            "tool_call_parser": state.settings.tool_call_parser,
            "cache_policy": state.settings.cache_policy,
            "engine": {
                "state": core.state,
                "running": core.num_running,
                "waiting": core.num_waiting,
                "steps": core.counters.steps,
                "errors": len(core.counters.errors),
                "aborted": core.counters.requests_aborted,
                "failed": core.counters.requests_failed,
            },
            "kv_cache": core.kv_stats(),
        })
    body["process"] = {"rss_bytes": _rss_bytes(), "mlx_active_bytes": mx.get_active_memory(),
                       "mlx_cache_bytes": mx.get_cache_memory(), "mlx_peak_bytes": mx.get_peak_memory()}
    body["uptime_s"] = round(time.time() - state.started_at, 1)
    return Response(content=msgspec.json.encode(body), media_type="application/json",
                    status_code=200 if ok else 503)


def _model_health(model: ServedModel) -> dict:
    runner = model.runner
    if hasattr(runner, "health"):
        details = runner.health()
    else:  # an LLM's AsyncEngine
        details = {"state": runner.engine.state, "running": runner.engine.num_running,
                   "waiting": runner.engine.num_waiting}
    return {"name": model.name, "kind": model.kind, "loader": model.loaded.loader if model.loaded else "",
            **details}


def _rss_bytes() -> int | None:
    """Resident memory of this process now (Linux), else its peak (macOS)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
    except Exception:  # noqa: BLE001 - no memory figure on this platform
        return None


def _histogram(lines: list[str], name: str, help_text: str, hist: Histogram, label: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} histogram")
    for bound, count in hist.cumulative():
        lines.append(f'{name}_bucket{{{label},le="{bound}"}} {count}')
    lines.append(f"{name}_sum{{{label}}} {hist.total}")
    lines.append(f"{name}_count{{{label}}} {hist.count}")


@get("/metrics")
async def metrics(request: Request) -> Response:
    state = server_state(request)
    if state.engine is None:
        return Response(content="", media_type="text/plain; version=0.0.4")
    core = state.engine.engine
    m = state.engine.metrics
    label = f'model_name="{state.settings.served_model_name}"'
    lines = [
        "# HELP vllm:num_requests_running Number of requests in the running batch.",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{label}}} {core.num_running}",
        "# HELP vllm:num_requests_waiting Number of requests waiting to join the batch.",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{{{label}}} {core.num_waiting}",
        "# HELP vllm:prompt_tokens_total Prompt tokens processed.",
        "# TYPE vllm:prompt_tokens_total counter",
        f"vllm:prompt_tokens_total{{{label}}} {m.prompt_tokens}",
        "# HELP vllm:generation_tokens_total Tokens generated.",
        "# TYPE vllm:generation_tokens_total counter",
        f"vllm:generation_tokens_total{{{label}}} {m.generation_tokens}",
        "# HELP vllm:request_success_total Finished requests, by finish reason.",
        "# TYPE vllm:request_success_total counter",
    ]
    for reason, count in sorted(m.finished.items()):
        lines.append(f'vllm:request_success_total{{{label},finished_reason="{reason}"}} {count}')
    kv = core.kv_stats()
    if kv:
        lines += [
            "# HELP vllm:kv_cache_usage_perc KV cache usage (1 = full): blocks held by running sequences.",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{{{label}}} {kv['usage']}",
            "# HELP vllm:prefix_cache_queries Prompt tokens looked up in the prefix cache.",
            "# TYPE vllm:prefix_cache_queries counter",
            f"vllm:prefix_cache_queries{{{label}}} {kv['prefix_queries']}",
            "# HELP vllm:prefix_cache_hits Prompt tokens found in the prefix cache.",
            "# TYPE vllm:prefix_cache_hits counter",
            f"vllm:prefix_cache_hits{{{label}}} {kv['prefix_hits']}",
            "# HELP vllm:num_preemptions_total Sequences preempted for lack of KV memory.",
            "# TYPE vllm:num_preemptions_total counter",
            f"vllm:num_preemptions_total{{{label}}} {kv['preemptions']}",
            "# HELP vllm_mlx:kv_cache_blocks KV blocks by use (total, working, cached).",
            "# TYPE vllm_mlx:kv_cache_blocks gauge",
        ]
        for use in ("total", "working", "cached"):
            lines.append(f'vllm_mlx:kv_cache_blocks{{{label},use="{use}"}} {kv["blocks_" + use]}')
    _histogram(lines, "vllm:time_to_first_token_seconds", "Time to first token.", m.ttft, label)
    _histogram(lines, "vllm:inter_token_latency_seconds", "Time between output tokens.", m.itl, label)
    _histogram(lines, "vllm:e2e_request_latency_seconds", "Request latency, arrival to finish.", m.e2e, label)
    return Response(content="\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
