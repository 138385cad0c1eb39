"""Load benchmarks behind ``vllm-mlx bench``; each prints one JSON line per concurrency level.

* ``serve`` (:mod:`.load`): streams chat completions from any OpenAI-compatible server over HTTP;
* ``engine`` (:mod:`.engine`): the same prompts and load through ``Engine`` + ``AsyncEngine``, in-process;
* ``raw`` (:mod:`.raw`): mlx-lm's ``BatchGenerator`` alone, the ceiling the other two approach.

All three share the prompt maker (:mod:`.prompts`) and the record format (:mod:`.stats`), so
their numbers compare like with like: ``tok_s`` is aggregate output tokens per wall-clock second.
"""

from .engine import BenchError, EngineBenchConfig, engine_bench
from .load import ServeBenchConfig, serve_bench
from .prefix import PrefixBenchConfig, prefix_bench
from .soak import SoakConfig, SoakError, soak
from .raw import RawBenchConfig, raw_bench
from .stats import FIELDS, Reporter, RequestStats, percentile, requests_for, summarize

__all__ = [
    "FIELDS", "BenchError", "EngineBenchConfig", "RawBenchConfig", "Reporter", "RequestStats",
    "PrefixBenchConfig", "ServeBenchConfig", "SoakConfig", "SoakError", "soak", "prefix_bench", "engine_bench", "percentile", "raw_bench", "requests_for", "serve_bench", "summarize",
]
