"""Per-request measurements, percentiles, and the one JSON line each level prints."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

FIELDS = ("conc", "requests", "errors", "out_tokens", "wall_s", "tok_s",
          "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "label", "mode")


@dataclass
class RequestStats:
    """One request as the client saw it: seconds from submission to each output chunk."""

    start: float = 0.0
    stamps: list[float] = field(default_factory=list)  # arrival of every chunk that carried output
    tokens: int = 0  # output tokens (from usage when the server reports it)
    prompt_tokens: int | None = None
    error: str | None = None
    usage_missing: bool = False  # tokens were counted from chunks: the server sent no usage

    @property
    def ok(self) -> bool:
        return self.error is None

    def mark(self, at: float) -> None:
        self.stamps.append(at)

    def ttft(self, end: float | None = None) -> float | None:
        if self.stamps:
            return self.stamps[0] - self.start
        return None if end is None else end - self.start

    def gaps(self) -> list[float]:
        s = self.stamps
        return [b - a for a, b in zip(s, s[1:])]


def requests_for(conc: int, requests: int = 0) -> int:
    """Requests in one level: ``requests`` when given, else twice the concurrency (at least 4)."""
    return requests if requests > 0 else max(2 * conc, 4)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``; NaN when empty.

    The rank is ``floor(p/100 * n)`` (0-based, clamped), the same rule the
    reference load generator uses, so the two tools' numbers line up.
    """
    if not values:
        return math.nan
    xs = sorted(values)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def _ms(seconds: float, digits: int) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000.0, digits)


def summarize(results: Iterable[RequestStats], *, conc: int, wall: float, label: str, mode: str) -> dict:
    """The JSON record for one concurrency level."""
    results = list(results)
    ok = [r for r in results if r.ok]
    out_tokens = sum(r.tokens for r in ok)
    ttfts = [t for r in ok if (t := r.ttft()) is not None]
    gaps = [g for r in ok for g in r.gaps()]
    prompts = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    record = {
        "conc": conc,
        "requests": len(results),
        "errors": len(results) - len(ok),
        "out_tokens": out_tokens,
        "wall_s": round(wall, 3),
        "tok_s": round(out_tokens / wall, 2) if wall > 0 else 0.0,
        "ttft_p50_ms": _ms(percentile(ttfts, 50), 1),
        "ttft_p99_ms": _ms(percentile(ttfts, 99), 1),
        "itl_p50_ms": _ms(percentile(gaps, 50), 2),
        "label": label,
        "mode": mode,
    }
    if prompts:
        record["prompt_tokens_avg"] = round(sum(prompts) / len(prompts), 1)
    errors = sorted({r.error for r in results if r.error})
    if errors:
        record["error_kinds"] = errors[:5]
    return record


class Reporter:
    """Prints each record as one JSON line and, with ``json_out``, appends it to that file."""

    def __init__(self, json_out: str | None = None, echo=None):
        self.json_out = json_out
        self.echo = echo or (lambda line: print(line, flush=True))
        self.records: list[dict] = []

    def __call__(self, record: dict) -> None:
        line = json.dumps(record)
        self.records.append(record)
        self.echo(line)
        if self.json_out:
            with open(self.json_out, "a", encoding="utf-8") as f:
                f.write(line + "\n")
