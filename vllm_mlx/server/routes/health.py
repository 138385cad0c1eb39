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
        "model_type": first.kind,  # llm, mllm, ... (the older vllm-mlx's name for it)
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
            "vision": _vision_stats(core),
        })
    if state.device is not None:  # several models: their turns on the shared device
        body["device_turns"] = state.device.stats()
    body["process"] = {"rss_bytes": _rss_bytes(), "mlx_active_bytes": mx.get_active_memory(),
                       "mlx_cache_bytes": mx.get_cache_memory(), "mlx_peak_bytes": mx.get_peak_memory()}
    body["uptime_s"] = round(time.time() - state.started_at, 1)
    return Response(content=msgspec.json.encode(body), media_type="application/json",
                    status_code=200 if ok else 503)


def _model_health(model: ServedModel) -> dict:
    runner = model.runner
    if hasattr(runner, "health"):
        details = runner.health()
    else:  # an LLM's AsyncEngine (or an embedding model's AsyncEmbedder)
        details = {"state": runner.engine.state, "running": runner.engine.num_running,
                   "waiting": runner.engine.num_waiting, "steps": runner.engine.counters.steps}
    return {"name": model.name, "kind": model.kind, "loader": model.loaded.loader if model.loaded else "",
            **details}


def _vision_stats(core) -> dict | None:
    vision = getattr(core, "vision", None)
    if vision is None:
        return None
    cache = vision.encoder_cache
    return {"encoder_cache_hits": cache.hits, "encoder_cache_misses": cache.misses,
            "encoder_cache_entries": len(cache._items)}


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


def _histogram(lines: list[str], name: str, hist: Histogram, label: str) -> None:
    for bound, count in hist.cumulative():
        lines.append(f'{name}_bucket{{{label},le="{bound}"}} {count}')
    lines.append(f"{name}_sum{{{label}}} {hist.total}")
    lines.append(f"{name}_count{{{label}}} {hist.count}")


@get("/metrics")
async def metrics(request: Request) -> Response:
    """One sample per metric and model (``model_name`` label) for every LLM and embedding model."""
    state = server_state(request)
    families: dict[str, tuple[str, str, list[str]]] = {}  # name -> (help, type, samples), in first-seen order
    for st in state.primary_states():
        _model_metrics(st, families)
    lines = []
    for name, (help_text, kind, samples) in families.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]
    return Response(content="\n".join(lines) + "\n" if lines else "", media_type="text/plain; version=0.0.4")


def _model_metrics(state, families: dict) -> None:
    core = state.engine.engine
    m = state.engine.metrics
    label = f'model_name="{state.settings.served_model_name}"'

    def add(name: str, help_text: str, kind: str, *samples: str) -> None:
        families.setdefault(name, (help_text, kind, []))[2].extend(samples)

    add("vllm:num_requests_running", "Number of requests in the running batch.", "gauge",
        f"vllm:num_requests_running{{{label}}} {core.num_running}")
    add("vllm:num_requests_waiting", "Number of requests waiting to join the batch.", "gauge",
        f"vllm:num_requests_waiting{{{label}}} {core.num_waiting}")
    add("vllm:prompt_tokens_total", "Prompt tokens processed.", "counter",
        f"vllm:prompt_tokens_total{{{label}}} {m.prompt_tokens}")
    add("vllm:generation_tokens_total", "Tokens generated.", "counter",
        f"vllm:generation_tokens_total{{{label}}} {m.generation_tokens}")
    add("vllm:request_success_total", "Finished requests, by finish reason.", "counter",
        *[f'vllm:request_success_total{{{label},finished_reason="{reason}"}} {count}'
          for reason, count in sorted(m.finished.items())])
    kv = core.kv_stats()
    if kv:
        add("vllm:kv_cache_usage_perc", "KV cache usage (1 = full): blocks held by running sequences.", "gauge",
            f"vllm:kv_cache_usage_perc{{{label}}} {kv['usage']}")
        add("vllm:prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", "counter",
            f"vllm:prefix_cache_queries{{{label}}} {kv['prefix_queries']}")
        add("vllm:prefix_cache_hits", "Prompt tokens found in the prefix cache.", "counter",
            f"vllm:prefix_cache_hits{{{label}}} {kv['prefix_hits']}")
        add("vllm:num_preemptions_total", "Sequences preempted for lack of KV memory.", "counter",
            f"vllm:num_preemptions_total{{{label}}} {kv['preemptions']}")
        add("vllm_mlx:kv_cache_blocks", "KV blocks by use (total, working, cached).", "gauge",
            *[f'vllm_mlx:kv_cache_blocks{{{label},use="{use}"}} {kv["blocks_" + use]}'
              for use in ("total", "working", "cached")])
    for name, help_text, hist in (("vllm:time_to_first_token_seconds", "Time to first token.", m.ttft),
                                  ("vllm:inter_token_latency_seconds", "Time between output tokens.", m.itl),
                                  ("vllm:e2e_request_latency_seconds", "Request latency, arrival to finish.", m.e2e)):
        samples: list[str] = []
        _histogram(samples, name, hist, label)
        add(name, help_text, "histogram", *samples)
