"""``bench soak``: a long, messy load against a running server on this machine.

``streams`` clients loop until ``duration`` seconds or ``max_requests`` have
passed. Each request is random: prompt length, streaming or not, ``n`` 1-3,
stop strings, logprobs, max_tokens, a shared system prompt or none; about one in
five is abandoned by its client at a random moment (the connection is closed).
At the end the server is polled until idle, and one JSON object reports requests
ok / failed / cancelled, the KV blocks still held (must be 0 when idle), and the
server's resident memory at the start (after a warm-up) and at the end.

A request counts as failed when it was not cancelled by its client and did not
end with a 2xx and a complete body (for streams: ``data: [DONE]``), or when any
response was a 5xx. Loopback only: this is a load tool for your own server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from .prompts import make_texts


class SoakError(RuntimeError):
    pass


@dataclass
class SoakConfig:
    url: str = "http://127.0.0.1:8000"
    model: str = "default"
    streams: int = 64
    duration: float = 600.0
    max_requests: int = 1_000_000
    api_key: str | None = None
    seed: int = 1
    disconnect_rate: float = 0.2
    max_tokens: int = 96
    label: str = ""
    idle_timeout: float = 120.0
    warmup: float = 60.0  # seconds of load before the starting RSS is read
    prompt_words: int = 120  # user messages have 1..prompt_words words
    system_words: int = 100  # half the requests start with the same system prompt of this length


@dataclass
class _Tally:
    ok: int = 0
    failed: int = 0
    cancelled: int = 0
    status_5xx: int = 0
    status_4xx: int = 0
    started: int = 0
    failures: dict = field(default_factory=dict)

    def fail(self, kind: str) -> None:
        self.failed += 1
        self.failures[kind] = self.failures.get(kind, 0) + 1


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SoakError(f"soak runs against a server on this machine only (127.0.0.1, ::1, localhost), not {host!r}")


def _body(rng: random.Random, cfg: SoakConfig, texts: list[str], system: str) -> dict:
    text = rng.choice(texts)
    words = text.split()
    text = " ".join(words[: rng.randrange(1, len(words) + 1)])
    messages = [{"role": "user", "content": text}]
    if rng.random() < 0.5:
        messages.insert(0, {"role": "system", "content": system})
    body = {"model": cfg.model, "messages": messages, "max_tokens": rng.randrange(1, cfg.max_tokens + 1),
            "temperature": rng.choice([0.0, 0.7, 1.0]), "n": rng.choice([1, 1, 1, 2, 3]),
            "stream": rng.random() < 0.7}
    if rng.random() < 0.3:
        body["stop"] = rng.sample(["the", "a", ".", "\n", "zz"], rng.randrange(1, 3))
    if rng.random() < 0.3:
        body["logprobs"] = True
        body["top_logprobs"] = rng.randrange(0, 5)
    if rng.random() < 0.2:
        body["seed"] = rng.randrange(1000)
    if body["stream"]:
        body["stream_options"] = {"include_usage": True}
    return body


async def _one(client, cfg: SoakConfig, body: dict, cancel_after: float | None, tally: _Tally) -> None:
    async def call() -> None:
        url = cfg.url.rstrip("/") + "/v1/chat/completions"
        if body["stream"]:
            async with client.stream("POST", url, json=body) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    _status(resp.status_code, tally)
                    return
                done = False
                async for line in resp.aiter_lines():
                    if line == "data: [DONE]":
                        done = True
                    elif line.startswith("data: ") and '"error"' in line[:20]:
                        tally.fail("error_event")
                        return
                if done:
                    tally.ok += 1
                else:
                    tally.fail("truncated_stream")
        else:
            resp = await client.post(url, json=body)
            if resp.status_code >= 400:
                _status(resp.status_code, tally)
            elif resp.json().get("choices") is None:
                tally.fail("bad_body")
            else:
                tally.ok += 1

    task = asyncio.ensure_future(call())
    try:
        if cancel_after is None:
            await task
        else:
            await asyncio.wait_for(asyncio.shield(task), cancel_after)
    except asyncio.TimeoutError:
        task.cancel()
        tally.cancelled += 1
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - we walked away on purpose
            pass
    except Exception as exc:  # noqa: BLE001 - a connection error is a failure, not the end of the soak
        tally.fail(type(exc).__name__)


def _status(code: int, tally: _Tally) -> None:
    if code >= 500:
        tally.status_5xx += 1
        tally.fail(f"http_{code}")
    elif code == 429:
        tally.status_4xx += 1
        tally.fail("http_429")
    else:
        tally.status_4xx += 1
        tally.fail(f"http_{code}")


async def _health(client, cfg: SoakConfig) -> dict:
    resp = await client.get(cfg.url.rstrip("/") + "/health")
    return resp.json()


async def _soak(cfg: SoakConfig) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    limits = httpx.Limits(max_connections=cfg.streams + 8, max_keepalive_connections=cfg.streams + 8)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=httpx.Timeout(300.0)) as client:
        texts = make_texts(64, cfg.prompt_words, cfg.seed)
        system = make_texts(1, cfg.system_words, cfg.seed + 1)[0]
        tally = _Tally()
        start: dict = {}
        deadline = time.monotonic() + cfg.duration
        t0 = time.monotonic()

        async def worker(seed: int) -> None:
            wrng = random.Random(seed)
            while time.monotonic() < deadline and tally.started < cfg.max_requests:
                tally.started += 1
                body = _body(wrng, cfg, texts, system)
                cancel = wrng.uniform(0.05, 5.0) if wrng.random() < cfg.disconnect_rate else None
                await _one(client, cfg, body, cancel, tally)

        async def after_warmup() -> None:
            await asyncio.sleep(cfg.warmup)
            start.update(await _health(client, cfg))

        sampler = asyncio.ensure_future(after_warmup())
        await asyncio.gather(*(worker(cfg.seed * 1000 + i) for i in range(cfg.streams)))
        if not start:
            sampler.cancel()
            start.update(await _health(client, cfg))
        wall = time.monotonic() - t0
        idle_deadline = time.monotonic() + cfg.idle_timeout
        end = await _health(client, cfg)
        while (end["engine"]["running"] or end["engine"]["waiting"]) and time.monotonic() < idle_deadline:
            await asyncio.sleep(0.5)
            end = await _health(client, cfg)
    kv = end.get("kv_cache", {})
    rss0, rss1 = start.get("process", {}).get("rss_bytes"), end.get("process", {}).get("rss_bytes")
    kv0, kv1 = _kv_bytes(start), _kv_bytes(end)
    return {
        "mode": "soak", "label": cfg.label, "streams": cfg.streams, "wall_s": round(wall, 1),
        "requests": tally.started, "ok": tally.ok, "failed": tally.failed, "cancelled": tally.cancelled,
        "failures": tally.failures, "status_5xx": tally.status_5xx, "status_4xx": tally.status_4xx,
        "idle": not (end["engine"]["running"] or end["engine"]["waiting"]),
        "kv_blocks_in_use": kv.get("blocks_working"), "kv_blocks_cached": kv.get("blocks_cached"),
        "engine_state": end["engine"]["state"], "engine_errors": end["engine"].get("errors"),
        "mlx_active_mib": [_mib(h, "mlx_active_bytes") for h in (start, end)],
        "mlx_cache_mib": [_mib(h, "mlx_cache_bytes") for h in (start, end)],
        "rss_start_mib": round(rss0 / 2**20, 1) if rss0 else None,
        "rss_end_mib": round(rss1 / 2**20, 1) if rss1 else None,
        "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2) if rss0 and rss1 else None,
        # The prefix cache grows by design until its budget is full; what must not grow is the rest.
        "kv_held_start_mib": round(kv0 / 2**20, 1), "kv_held_end_mib": round(kv1 / 2**20, 1),
        "rss_growth_excluding_kv_pct": round(100 * ((rss1 - kv1) - (rss0 - kv0)) / (rss0 - kv0), 2)
        if rss0 and rss1 and rss0 > kv0 else None,
    }


def _mib(health: dict, key: str) -> float | None:
    value = health.get("process", {}).get(key)
    return None if value is None else round(value / 2**20, 1)


def _kv_bytes(health: dict) -> int:
    kv = health.get("kv_cache") or {}
    return (kv.get("blocks_working", 0) + kv.get("blocks_cached", 0)) * kv.get("block_bytes", 0)


def soak(cfg: SoakConfig, report) -> dict:
    _check_loopback(cfg.url)
    record = asyncio.run(_soak(cfg))
    report(record)
    return record
