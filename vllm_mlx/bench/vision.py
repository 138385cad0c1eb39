"""``bench vision``: the vision targets of issue 8, against real servers started here.

Our server (``vllm-mlx serve``) and ``mlx_vlm.server`` run as subprocesses on the same
model folder, one after the other, in the same run; every request is a streamed
``/v1/chat/completions`` with ``temperature 0`` and a base64 PNG data: URL. Scenarios
(one JSON line each, or one per server and level):

* ``concurrent``: ``conc`` image requests at once, each with its own picture and a
  prompt of a different length; then the same requests as text only, each prompt padded
  with words to the token count of its image version (counted by our ``/tokenize``).
  Aggregate decode tok/s of both and their ratio (target >= 0.9), errors (target 0):
  ``decode_tok_s`` counts output tokens (``logprobs`` entries) in the window where every request of the batch is
  decoding (after the last first token, before the first request ends): the batch's steady
  decode rate (none when prefills take so long that a request ends before the last one
  starts: raise ``max_tokens``); ``span_tok_s`` is every token after each request's first over
  the whole span (first first-token to last token), so it also pays for the prefills that
  interrupt decoding.
  Repeated ``repeats`` times alternating image/text; the medians are reported.
* ``multiturn``: one picture in a conversation of ``turns`` turns, each resending the
  whole conversation; TTFT of every turn and turn-N / turn-1 (target <= 0.1: the encoder
  output and the prefix KV are cached).
* ``compare``: at each ``compare_conc`` level, image requests of different prompt lengths
  to our server and to ``mlx_vlm.server`` (both up; they take turns, ``compare_rounds``
  rounds, new pictures each round): requests/s, TTFT p50/p99 (medians over rounds), errors
  by kind. Neither server is sent ``ignore_eos`` (mlx_vlm.server has none).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .prompts import make_texts
from .stats import Reporter, percentile

QUESTIONS = ["What is in this picture?", "Which colours do you see?", "Describe the shapes.",
             "Is there a square in it?", "What is in the top left corner?", "Describe it in one sentence."]


@dataclass
class VisionBenchConfig:
    model: str | None = None  # a vision model folder; None: build a random one (``family``, ``size``)
    family: str = "gemma3"
    size: str = "bench"
    model_dir: str | None = None  # where to build it (default: a temporary folder)
    scenarios: tuple[str, ...] = ("concurrent", "multiturn", "compare")
    conc: int = 8
    max_tokens: int = 64
    repeats: int = 3
    turns: int = 4
    turn_tokens: int = 24  # max_tokens of each turn's answer in ``multiturn``
    compare_conc: list[int] = field(default_factory=lambda: [1, 3, 8])
    compare_requests: int = 0  # per level and round; 0: max(2*conc, 4)
    compare_rounds: int = 2
    mlx_vlm: bool = True
    picture_side: int = 448
    seed: int = 1
    label: str = ""
    timeout: float = 600.0
    startup_timeout: float = 600.0
    log_dir: str | None = None


# -- servers ------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess on a loopback port; ``model`` is the request's ``model`` field."""

    def __init__(self, name: str, cmd: list[str], port: int, model: str, log: Path):
        self.name, self.port, self.model, self.log_path = name, port, model, log
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ))

    def wait_ready(self, timeout: float) -> "Server":
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_ours(cfg: VisionBenchConfig, model: str, log_dir: Path) -> Server:
    port = _free_port()
    cmd = [sys.executable, "-m", "vllm_mlx.cli.main", "serve", model, "--host", "127.0.0.1", "--port", str(port),
           "--served-model-name", "bench", "--max-num-seqs", str(max(16, cfg.conc, *cfg.compare_conc)),
           "--log-level", "warning"]
    if cfg.family == "gemma3":
        cmd += ["--sliding-window", "0"]  # Gemma 3 shares prefix blocks only with full caches (docs/guides/kv-cache.md)
    return Server("vllm-mlx", cmd, port, "bench", log_dir / "vllm-mlx.log").wait_ready(cfg.startup_timeout)


def start_mlx_vlm(cfg: VisionBenchConfig, model: str, log_dir: Path) -> Server:
    port = _free_port()
    cmd = [sys.executable, "-m", "mlx_vlm.server", "--model", model, "--host", "127.0.0.1", "--port", str(port)]
    return Server("mlx_vlm.server", cmd, port, model, log_dir / "mlx_vlm.log").wait_ready(cfg.startup_timeout)


# -- requests -----------------------------------------------------------------------------------------


@dataclass
class Result:
    ok: bool = False
    error: str | None = None
    t_start: float = 0.0
    t_first: float | None = None
    t_last: float | None = None
    out_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    text: str = ""
    stamps: list[tuple[float, int]] = field(default_factory=list)  # (arrival, tokens) of every output chunk

    @property
    def ttft(self) -> float | None:
        return None if self.t_first is None else self.t_first - self.t_start


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_message(text: str, png: bytes) -> dict:
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(png)}},
                                        {"type": "text", "text": text}]}


async def stream_chat(client, server: Server, messages: list[dict], max_tokens: int, timeout: float,
                      ignore_eos: bool = True, logprobs: bool = False) -> Result:
    """One streamed request. With ``logprobs`` each chunk's tokens are counted exactly (one logprob
    entry per token: a chunk may carry several tokens, or none of its text when the detokenizer
    holds back an incomplete character); without, one per chunk with text."""
    body: dict[str, Any] = {"model": server.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
                            "stream": True, "stream_options": {"include_usage": True}}
    if ignore_eos:
        body["ignore_eos"] = True
    if logprobs:
        body["logprobs"] = True
    r = Result(t_start=time.perf_counter())
    chunks = 0
    try:
        async with client.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=timeout) as resp:
            if resp.status_code != 200:
                await resp.aread()
                r.error = f"HTTP {resp.status_code}"
                return r
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:  # an error inside a 200 stream: its message says what failed
                    err = event["error"]
                    msg = err.get("message", "") if isinstance(err, dict) else str(err)
                    r.error = f"stream error: {msg[:80]}"
                    return r
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    entries = (choice.get("logprobs") or {}).get("content")
                    n = len(entries) if entries else (1 if piece else 0)
                    if n:
                        now = time.perf_counter()
                        r.t_first = r.t_first or now
                        r.t_last = now
                        r.stamps.append((now, n))
                        chunks += n
                    r.text += piece or ""
                usage = event.get("usage")
                if usage:
                    r.out_tokens = usage.get("completion_tokens", 0)
                    r.prompt_tokens = usage.get("prompt_tokens", 0)
                    r.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    except Exception as exc:  # noqa: BLE001 - a failed request is a result, counted as an error
        r.error = type(exc).__name__
        return r
    r.out_tokens = r.out_tokens or chunks
    r.ok = r.t_first is not None
    if not r.ok:
        r.error = "no output"
    return r


async def tokenize_count(client, server: Server, messages: list[dict]) -> int:
    resp = await client.post(server.url + "/tokenize", json={"model": server.model, "messages": messages}, timeout=120)
    resp.raise_for_status()
    return resp.json()["count"]


def _new_client(limit: int):
    import httpx

    return httpx.AsyncClient(limits=httpx.Limits(max_connections=limit + 4, max_keepalive_connections=limit + 4))


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


def summarize(results: list[Result], wall: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    ttfts = sorted(r.ttft for r in ok)
    firsts = [r.t_first for r in ok]
    lasts = [r.t_last for r in ok]
    decode_tokens = sum(max(r.out_tokens - 1, 0) for r in ok)
    span = (max(lasts) - min(firsts)) if ok else 0.0
    # the window in which every request of the batch was decoding (each had its first token, none had
    # finished): output chunks arriving in it per second is the batch's steady decode rate
    lo, hi = (max(firsts), min(lasts)) if ok else (0.0, 0.0)
    in_window = sum(n for r in ok for t, n in r.stamps if lo < t <= hi)
    kinds: dict[str, int] = {}
    for r in results:
        if not r.ok:
            kinds[r.error or "?"] = kinds.get(r.error or "?", 0) + 1
    out = {"requests": len(results), "errors": len(results) - len(ok), "out_tokens": sum(r.out_tokens for r in ok),
           "wall_s": round(wall, 3), "req_s": round(len(ok) / wall, 3) if wall else 0.0,
           "tok_s": round(sum(r.out_tokens for r in ok) / wall, 2) if wall else 0.0,
           "decode_tok_s": round(in_window / (hi - lo), 2) if hi - lo > 0 and in_window else None,
           "span_tok_s": round(decode_tokens / span, 2) if span > 0 else None,
           "ttft_p50_ms": _ms(percentile(ttfts, 50)) if ttfts else None,
           "ttft_p99_ms": _ms(percentile(ttfts, 99)) if ttfts else None,
           "prompt_tokens_avg": round(statistics.mean(r.prompt_tokens for r in ok), 1) if ok else None}
    if kinds:
        out["error_kinds"] = kinds
    return out


async def run_batch(server: Server, batch: list[list[dict]], max_tokens: int, timeout: float,
                    ignore_eos: bool = True, logprobs: bool = False) -> dict[str, Any]:
    async with _new_client(len(batch)) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(stream_chat(client, server, m, max_tokens, timeout, ignore_eos, logprobs)
                                         for m in batch))
        return summarize(results, time.perf_counter() - t0)


# -- scenarios ----------------------------------------------------------------------------------------


def _median(values: list[float], digits: int = 2) -> float | None:
    return round(statistics.median(values), digits) if values else None


def _image_prompts(cfg: VisionBenchConfig, count: int, seed: int) -> list[list[dict]]:
    """``count`` one-picture requests, prompt lengths 4, 4+step, ... words, each its own picture."""
    from .vision_models import make_picture

    step = 12
    texts = [make_texts(1, 4 + step * i, seed=seed * 1000 + i)[0] for i in range(count)]
    return [[image_message(f"{QUESTIONS[i % len(QUESTIONS)]} {t}",
                           make_picture(seed * 1000 + i, cfg.picture_side))] for i, t in enumerate(texts)]


async def _text_twin(client, server: Server, messages: list[dict], seed: int) -> tuple[list[dict], int, int]:
    """The same request as text only: the picture replaced by filler words, as many as bring the
    prompt to the image version's token count (or as close as whole words allow)."""
    want = await tokenize_count(client, server, messages)
    text = next(p["text"] for p in messages[0]["content"] if p["type"] == "text")
    filler = make_texts(1, 2000, seed=seed + 7919)[0].split()

    def build(n: int) -> list[dict]:
        return [{"role": "user", "content": " ".join(filler[:n]) + " " + text}]

    base = await tokenize_count(client, server, build(0))
    n = max(0, int((want - base) / 1.5))
    best = (abs(await tokenize_count(client, server, build(n)) - want), n)
    for _ in range(8):
        got = await tokenize_count(client, server, build(n))
        best = min(best, (abs(got - want), n))
        if got == want:
            break
        per_word = max((got - base) / n, 0.5) if n else 1.5
        n = max(0, n + round((want - got) / per_word)) if abs(want - got) > 2 else n + (1 if got < want else -1)
    n = best[1]
    return build(n), want, await tokenize_count(client, server, build(n))


async def concurrent(cfg: VisionBenchConfig, server: Server) -> dict[str, Any]:
    rounds, twins = [], []
    for r in range(cfg.repeats):
        # new pictures and new text each round: nothing is served from the encoder or prefix caches
        images = _image_prompts(cfg, cfg.conc, cfg.seed + 100 * r)
        async with _new_client(4) as client:
            twins = [await _text_twin(client, server, m, cfg.seed + 100 * r + i) for i, m in enumerate(images)]
        img = await run_batch(server, images, cfg.max_tokens, cfg.timeout, logprobs=True)
        txt = await run_batch(server, [t[0] for t in twins], cfg.max_tokens, cfg.timeout, logprobs=True)
        rounds.append((img, txt))
    med = statistics.median
    img_rates = [i["decode_tok_s"] for i, _ in rounds]
    txt_rates = [t["decode_tok_s"] for _, t in rounds]
    img_span = [i["span_tok_s"] or 0.0 for i, _ in rounds]
    txt_span = [t["span_tok_s"] or 0.0 for _, t in rounds]
    return {"scenario": "concurrent", "server": server.name, "conc": cfg.conc, "max_tokens": cfg.max_tokens,
            "repeats": cfg.repeats, "image_errors": sum(i["errors"] for i, _ in rounds),
            "text_errors": sum(t["errors"] for _, t in rounds),
            "image_prompt_tokens": [t[1] for t in twins], "text_prompt_tokens": [t[2] for t in twins],
            # rounds where a request ended before the last one started have no window: left out
            "decode_rounds": sum(1 for i, t in zip(img_rates, txt_rates) if i and t),
            "image_decode_tok_s": _median([i for i in img_rates if i]),
            "text_decode_tok_s": _median([t for t in txt_rates if t]),
            "decode_ratio": _median([i / t for i, t in zip(img_rates, txt_rates) if i and t], 3),
            "image_span_tok_s": round(med(img_span), 2), "text_span_tok_s": round(med(txt_span), 2),
            "span_ratio": round(med([i / t for i, t in zip(img_span, txt_span) if t] or [0.0]), 3),
            "image_tok_s": round(med(i["tok_s"] for i, _ in rounds), 2),
            "text_tok_s": round(med(t["tok_s"] for _, t in rounds), 2),
            "image_ttft_p50_ms": med(i["ttft_p50_ms"] or 0 for i, _ in rounds),
            "text_ttft_p50_ms": med(t["ttft_p50_ms"] or 0 for _, t in rounds),
            "rounds": [{"image": i, "text": t} for i, t in rounds]}


async def multiturn(cfg: VisionBenchConfig, server: Server, seed: int) -> dict[str, Any]:
    from .vision_models import make_picture

    picture = make_picture(seed, cfg.picture_side)
    messages = [image_message(QUESTIONS[0], picture)]
    turns = []
    async with _new_client(1) as client:
        for k in range(cfg.turns):
            r = await stream_chat(client, server, messages, cfg.turn_tokens, cfg.timeout)
            if not r.ok:
                raise RuntimeError(f"multiturn turn {k + 1} failed: {r.error}")
            turns.append({"turn": k + 1, "ttft_ms": _ms(r.ttft), "prompt_tokens": r.prompt_tokens,
                          "cached_tokens": r.cached_tokens})
            messages = messages + [{"role": "assistant", "content": r.text},
                                   {"role": "user", "content": QUESTIONS[(k + 1) % len(QUESTIONS)]}]
    return turns


async def multiturn_scenario(cfg: VisionBenchConfig, server: Server) -> dict[str, Any]:
    await multiturn(cfg, server, seed=cfg.seed + 50_000)  # warm-up conversation (another picture)
    turns = await multiturn(cfg, server, seed=cfg.seed + 60_000)
    first, last = turns[0]["ttft_ms"], turns[-1]["ttft_ms"]
    return {"scenario": "multiturn", "server": server.name, "turns": turns, "turn1_ttft_ms": first,
            "turnN_ttft_ms": last, "ratio": round(last / first, 3) if first else None}


async def _level(cfg: VisionBenchConfig, server: Server, prompts: list[list[dict]], conc: int) -> dict[str, Any]:
    sem = asyncio.Semaphore(conc)
    async with _new_client(conc) as client:
        async def one(m):
            async with sem:
                # mlx_vlm.server has no ignore_eos: both servers stop at end of sequence
                return await stream_chat(client, server, m, cfg.max_tokens, cfg.timeout, ignore_eos=False)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(m) for m in prompts))
        return summarize(results, time.perf_counter() - t0)


async def compare(cfg: VisionBenchConfig, servers: list[Server]) -> list[dict[str, Any]]:
    """Each level runs ``compare_rounds`` rounds, the servers taking turns within a round (both are
    up, one is asked at a time), so that drift in the machine's load hits both alike; medians are
    reported. Every round sends new pictures, the same ones to each server."""
    lines = []
    for server in servers:  # warm-up: the first image request loads and allocates
        await _level(cfg, server, _image_prompts(cfg, 1, cfg.seed + 70_000), 1)
    for level, conc in enumerate(cfg.compare_conc):
        n = cfg.compare_requests or max(2 * conc, 4)
        runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
        for r in range(cfg.compare_rounds):
            prompts = _image_prompts(cfg, n, cfg.seed + 80_000 + 100 * level + r)
            for server in servers:
                runs[server.name].append(await _level(cfg, server, prompts, conc))
        for server in servers:
            got = runs[server.name]

            def med(key: str) -> float | None:
                values = [g[key] for g in got if g[key] is not None]
                return round(statistics.median(values), 3) if values else None

            kinds: dict[str, int] = {}
            for g in got:
                for k, v in g.get("error_kinds", {}).items():
                    kinds[k] = kinds.get(k, 0) + v
            line = {"scenario": "compare", "server": server.name, "media": "image", "conc": conc,
                    "requests": sum(g["requests"] for g in got), "errors": sum(g["errors"] for g in got),
                    "rounds": len(got), "req_s": med("req_s"), "tok_s": med("tok_s"),
                    "ttft_p50_ms": med("ttft_p50_ms"), "ttft_p99_ms": med("ttft_p99_ms"),
                    "prompt_tokens_avg": med("prompt_tokens_avg"), "runs": got}
            if kinds:
                line["error_kinds"] = kinds
            lines.append(line)
    return lines


# -- driver -------------------------------------------------------------------------------------------


def vision_bench(cfg: VisionBenchConfig, reporter: Reporter) -> None:
    tmp = tempfile.TemporaryDirectory(prefix="vllm-mlx-bench-vision-")
    try:
        model = cfg.model
        if model is None:
            from .vision_models import BUILDERS

            out = Path(cfg.model_dir or tmp.name) / f"{cfg.family}-{cfg.size}"
            if not (out / "config.json").exists():
                BUILDERS[cfg.family](out, cfg.size)
            model = str(out)
        log_dir = Path(cfg.log_dir or tmp.name)
        log_dir.mkdir(parents=True, exist_ok=True)
        base = {"mode": "vision", "label": cfg.label, "model": model, "family": cfg.family}

        def emit(record: dict[str, Any]) -> None:
            reporter({**record, **base})

        servers = [start_ours(cfg, model, log_dir)]
        try:
            if "concurrent" in cfg.scenarios:
                emit(asyncio.run(concurrent(cfg, servers[0])))
            if "multiturn" in cfg.scenarios:
                emit(asyncio.run(multiturn_scenario(cfg, servers[0])))
            if "compare" in cfg.scenarios:
                if cfg.mlx_vlm:
                    servers.append(start_mlx_vlm(cfg, model, log_dir))
                for line in asyncio.run(compare(cfg, servers)):
                    emit(line)
        finally:
            for server in servers:
                server.stop()
    finally:
        tmp.cleanup()
