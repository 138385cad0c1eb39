"""``vllm-mlx bench``: load benchmarks that print JSON (the logic lives in ``vllm_mlx.bench``)."""

from __future__ import annotations

import sys

import click


def _conc_list(ctx, param, value: str) -> list[int]:
    try:
        levels = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter("expected comma-separated integers, e.g. 1,5,16,64") from None
    if not levels or any(c < 1 for c in levels):
        raise click.BadParameter("each concurrency must be at least 1")
    return levels


def _common(fn):
    """Options every bench command takes."""
    opts = [
        click.option("--conc", default="1,5,16,64", show_default=True, callback=_conc_list,
                     help="Concurrency levels (requests in flight), comma-separated; one JSON line each."),
        click.option("--requests", default=0, type=click.IntRange(0),
                     help="Requests per level (default: max(2*conc, 4))."),
        click.option("--max-tokens", default=128, show_default=True, type=click.IntRange(1),
                     help="Output tokens per request."),
        click.option("--label", default="", help="Free text copied into every JSON line."),
        click.option("--json-out", default=None, type=click.Path(dir_okay=False),
                     help="Also append the JSON lines to this file."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _reporter(json_out):
    from ..bench import Reporter

    return Reporter(json_out, echo=lambda line: click.echo(line))


@click.group()
def bench() -> None:
    """Benchmarks: against a running server (serve), in-process (engine), or mlx-lm alone (raw).

    Each prints one JSON line per concurrency level with aggregate output tok/s,
    TTFT p50/p99 and inter-token p50 (ms). Greedy, and every request makes exactly
    --max-tokens tokens (end-of-sequence ignored), so the three modes do the same work.
    """


def _api_list(_ctx, _param, value: str) -> list[str]:
    apis = [a.strip() for a in value.split(",") if a.strip()]
    bad = [a for a in apis if a not in ("chat", "messages", "responses")]
    if bad or not apis or len(set(apis)) != len(apis):
        raise click.BadParameter("expected chat, messages or responses, comma-separated without repeats")
    return apis


@bench.command("serve")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="Server base URL (no /v1).")
@click.option("--model", default="default", show_default=True, help="The 'model' field of each request.")
@_common
@click.option("--prompt-words", default=64, show_default=True, type=click.IntRange(1),
              help="Words per prompt (seeded random words: different per request, same every run).")
@click.option("--api-key", envvar="VLLM_MLX_API_KEY", default=None, help="Sent as 'Authorization: Bearer KEY'.")
@click.option("--seed", default=1, show_default=True, type=int, help="Prompt seed.")
@click.option("--ignore-eos/--no-ignore-eos", default=True, show_default=True,
              help="Send ignore_eos so every request makes exactly --max-tokens tokens "
                   "(turn off for servers that reject it).")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(min=1),
              help="Per-request connect/read timeout in seconds; a request past it counts as an error.")
@click.option("--tools", is_flag=True,
              help="Send a tool definition with every request, so the server's tool-call parser reads the output.")
@click.option("--api", default="chat", show_default=True, callback=_api_list, metavar="API[,API...]",
              help="Which API to stream: chat (/v1/chat/completions), messages (Anthropic /v1/messages) or "
                   "responses (/v1/responses). Several (e.g. chat,messages,responses): each level is run for "
                   "each API, --rounds times in rotating order, then a summary line gives the median tok/s per "
                   "API and each one's cost against the first.")
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(1),
              help="With several --api: rounds of every API per level (medians over rounds).")
def serve_cmd(url, model, conc, requests, max_tokens, label, json_out, prompt_words, api_key, seed, ignore_eos,
              timeout, tools, api, rounds):
    """Stream /v1/chat/completions (or /v1/messages, /v1/responses) from a running server at each
    concurrency level."""
    from ..bench import ServeBenchConfig, serve_bench
    from ..bench.load import api_compare

    cfg = ServeBenchConfig(url=url, model=model, conc=conc, requests=requests, max_tokens=max_tokens,
                           prompt_words=prompt_words, api_key=api_key or None, label=label, seed=seed,
                           ignore_eos=ignore_eos, timeout=timeout, tools=tools, api=api[0])
    if len(api) > 1 or rounds > 1:
        api_compare(cfg, api, rounds, _reporter(json_out))
    else:
        serve_bench(cfg, _reporter(json_out))



@bench.command("engine")
@click.argument("model")
@_common
@click.option("--prompt-words", default=64, show_default=True, type=click.IntRange(1),
              help="Words per prompt (the same prompts `bench serve` sends).")
@click.option("--max-num-seqs", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="The engine's batch limit (as `vllm-mlx serve --max-num-seqs`).")
@click.option("--prefill-batch-size", default=None, type=click.IntRange(1),
              help="As `vllm-mlx serve --prefill-batch-size`.")
@click.option("--enable-prefix-caching/--no-enable-prefix-caching", default=True, show_default=True,
              help="As `vllm-mlx serve`: measure the engine with and without the prefix cache.")
@click.option("--seed", default=1, show_default=True, type=int, help="Prompt seed.")
@click.option("--ignore-eos/--no-ignore-eos", default=True, show_default=True,
              help="Ignore end-of-sequence so every request makes exactly --max-tokens tokens.")
def engine_cmd(model, conc, requests, max_tokens, label, json_out, prompt_words, max_num_seqs, prefill_batch_size,
               enable_prefix_caching, seed, ignore_eos):
    """Run the same load in-process through Engine + AsyncEngine (no HTTP) on MODEL."""
    from ..bench import BenchError, EngineBenchConfig, engine_bench
    from ..model_source import ModelSourceError
    from ..plugins import PluginError

    cfg = EngineBenchConfig(model=model, conc=conc, requests=requests, max_tokens=max_tokens,
                            prompt_words=prompt_words, max_num_seqs=max_num_seqs, label=label, seed=seed,
                            prefill_batch_size=prefill_batch_size, ignore_eos=ignore_eos, prefix_caching=enable_prefix_caching)
    try:
        engine_bench(cfg, _reporter(json_out))
    except (BenchError, ModelSourceError, PluginError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@bench.command("raw")
@click.argument("model")
@_common
@click.option("--prompt-tokens", default=80, show_default=True, type=click.IntRange(1),
              help="Random token ids per prompt (no chat template in this mode).")
@click.option("--prompt-words", default=None, type=click.IntRange(1),
              help="Instead of random ids, use the exact prompts `bench engine --prompt-words N` uses "
                   "(same texts through the chat template): a like-for-like ceiling.")
@click.option("--seed", default=1, show_default=True, type=int, help="Prompt seed.")
def raw_cmd(model, conc, requests, max_tokens, label, json_out, prompt_tokens, prompt_words, seed):
    """The ceiling: mlx-lm's BatchGenerator on MODEL with no engine, server or detokenizer."""
    from ..bench import BenchError, RawBenchConfig, raw_bench
    from ..model_source import ModelSourceError
    from ..plugins import PluginError

    cfg = RawBenchConfig(model=model, conc=conc, requests=requests, max_tokens=max_tokens,
                         prompt_tokens=prompt_tokens, prompt_words=prompt_words, label=label, seed=seed)
    try:
        raw_bench(cfg, _reporter(json_out))
    except (BenchError, ModelSourceError, PluginError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@bench.command("prefix")
@click.argument("model")
@click.option("--system-tokens", default=3422, show_default=True, type=click.IntRange(32),
              help="Length of the shared system prompt (random ids).")
@click.option("--burst", default=8, show_default=True, type=click.IntRange(2), help="Requests in the cold burst.")
@click.option("--block-size", default=32, show_default=True, type=click.IntRange(1), help="KV block size.")
@click.option("--conc", default=16, show_default=True, type=click.IntRange(1), help="Concurrency of no_share.")
@click.option("--max-tokens", default=64, show_default=True, type=click.IntRange(1), help="Tokens per no_share request.")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1),
              help="no_share: alternating rounds with caching off and on; medians are compared.")
@click.option("--capacity-requests", default=24, show_default=True, type=click.IntRange(1),
              help="1k-token requests sent at once in the capacity scenario.")
@click.option("--scenario", "scenarios", multiple=True,
              type=click.Choice(["warm_repeat", "cold_burst", "conversation", "capacity", "no_share"]),
              help="Run only these (repeatable; default: all).")
@click.option("--label", default="", help="Free text copied into every JSON line.")
@click.option("--json-out", default=None, type=click.Path(dir_okay=False), help="Also append the JSON lines here.")
def prefix_cmd(model, system_tokens, burst, block_size, conc, max_tokens, repeats, capacity_requests, scenarios, label,
               json_out):
    """The prefix cache's targets on MODEL, in-process: warm vs cold TTFT, a cold burst sharing a
    prefix, a 10-turn conversation, capacity at a fixed KV budget, and the cost when nothing is shared."""
    from ..bench import BenchError, PrefixBenchConfig, prefix_bench
    from ..model_source import ModelSourceError
    from ..plugins import PluginError

    cfg = PrefixBenchConfig(model=model, system_tokens=system_tokens, burst=burst, block_size=block_size, conc=conc,
                            max_tokens=max_tokens, repeats=repeats, capacity_requests=capacity_requests, label=label)
    if scenarios:
        cfg.scenarios = tuple(scenarios)
    try:
        prefix_bench(cfg, _reporter(json_out))
    except (BenchError, ModelSourceError, PluginError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@bench.command("cpu")
@click.option("--pid", "pids", multiple=True, type=int, required=True, help="A process to watch (repeatable).")
@click.option("--seconds", default=30.0, show_default=True, type=click.FloatRange(min=0.5), help="Window length.")
@click.option("--label", default="", help="Free text copied into every JSON line.")
@click.option("--json-out", default=None, type=click.Path(dir_okay=False), help="Also append the JSON lines here.")
def cpu_cmd(pids, seconds, label, json_out):
    """CPU use of running processes over a window, one JSON line each ("cores": 1.0 = a whole core);
    e.g. the idle ranks of a distributed server (docs/guides/distributed.md)."""
    from ..bench.cpu import cpu_share

    report = _reporter(json_out)
    for pid, cores in cpu_share(list(pids), seconds).items():
        report({"pid": pid, "cores": cores, "seconds": seconds, "label": label, "mode": "cpu"})


@bench.command("soak")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True,
              help="A server on this machine (loopback addresses only).")
@click.option("--model", default="default", show_default=True, help="The 'model' field of each request.")
@click.option("--streams", default=64, show_default=True, type=click.IntRange(1, 4096), help="Concurrent clients.")
@click.option("--duration", default=600.0, show_default=True, type=click.FloatRange(min=1), help="Seconds of load.")
@click.option("--max-requests", default=1_000_000, show_default=True, type=click.IntRange(1),
              help="Stop starting requests after this many.")
@click.option("--warmup", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds of load before the starting memory is read.")
@click.option("--disconnect-rate", default=0.2, show_default=True, type=click.FloatRange(0, 1),
              help="Share of requests whose client walks away at a random moment.")
@click.option("--max-tokens", default=96, show_default=True, type=click.IntRange(1), help="Upper bound of max_tokens.")
@click.option("--prompt-words", default=120, show_default=True, type=click.IntRange(1),
              help="User messages have 1 to this many words.")
@click.option("--system-words", default=100, show_default=True, type=click.IntRange(1),
              help="Half the requests share a system prompt of this many words.")
@click.option("--api-key", envvar="VLLM_MLX_API_KEY", default=None, help="Sent as 'Authorization: Bearer KEY'.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--label", default="", help="Free text copied into the JSON.")
@click.option("--json-out", default=None, type=click.Path(dir_okay=False), help="Also append the JSON here.")
def soak_cmd(url, model, streams, duration, max_requests, warmup, disconnect_rate, max_tokens, prompt_words,
             system_words, api_key, seed, label, json_out):
    """Random long load with client disconnects against a local server; prints one JSON object:
    requests ok / failed / cancelled, KV blocks still in use once idle, server RSS start and end."""
    from ..bench import SoakConfig, SoakError, soak

    cfg = SoakConfig(url=url, model=model, streams=streams, duration=duration, max_requests=max_requests,
                     warmup=min(warmup, duration / 2), disconnect_rate=disconnect_rate, max_tokens=max_tokens,
                     api_key=api_key or None, seed=seed, label=label, prompt_words=prompt_words,
                     system_words=system_words)
    try:
        soak(cfg, _reporter(json_out))
    except SoakError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@bench.command("speech")
@click.option("--llm", default=None, help="An mlx-lm model folder for the chat streams (e.g. one made by "
                                          "shared/bench/make_model.py --size small); needed by 'interleave'.")
@click.option("--whisper", default=None, help="A Whisper folder (default: a random bench-sized one is built).")
@click.option("--kokoro", default=None, help="A Kokoro folder with voices/ (default: a random one is built).")
@click.option("--scenarios", default="rtf,tts,interleave", show_default=True,
              help="Comma-separated: rtf (HTTP vs mlx-audio), tts (streaming first chunk), interleave (chat ITL "
                   "during a transcription).")
@click.option("--audio-seconds", default=60.0, show_default=True, type=click.FloatRange(min=0.5),
              help="Length of the transcribed audio.")
@click.option("--streams", default=4, show_default=True, type=click.IntRange(1), help="Concurrent chat streams.")
@click.option("--max-tokens", default=64, show_default=True, type=click.IntRange(2),
              help="Tokens per chat stream (rounds repeat until the transcription ends).")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1),
              help="rtf/tts: runs of each side; the best counts.")
@click.option("--alone-rounds", default=4, show_default=True, type=click.IntRange(1),
              help="interleave: chat rounds without a transcription (the baseline), half before, half after.")
@click.option("--no-turns-too", "no_turns", is_flag=True,
              help="interleave: measure again on a server started with --no-device-turns, for comparison.")
@click.option("--label", default="", help="Free text copied into every JSON line.")
@click.option("--json-out", default=None, type=click.Path(dir_okay=False), help="Also append the JSON lines here.")
def speech_cmd(llm, whisper, kokoro, scenarios, audio_seconds, streams, max_tokens, repeats, alone_rounds, no_turns,
               label, json_out):
    """Speech serving: transcription real-time factor through HTTP vs mlx-audio directly, the first
    streamed chunk of speech vs the whole synthesis, and chat inter-token latency while a long
    transcription runs on the same server. One JSON line per scenario."""
    from ..bench.speech import SpeechBenchConfig, SpeechBenchError, speech_bench

    chosen = tuple(s.strip() for s in scenarios.split(",") if s.strip())
    unknown = set(chosen) - {"rtf", "tts", "interleave"}
    if unknown or not chosen:
        raise click.BadParameter(f"unknown scenario(s) {sorted(unknown)}: use rtf, tts, interleave",
                                 param_hint="--scenarios")
    cfg = SpeechBenchConfig(llm=llm, whisper=whisper, kokoro=kokoro, scenarios=chosen, audio_seconds=audio_seconds,
                            streams=streams, max_tokens=max_tokens, repeats=repeats, alone_rounds=alone_rounds,
                            no_turns=no_turns, label=label)
    try:
        speech_bench(cfg, _reporter(json_out))
    except SpeechBenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@bench.command("vision")
@click.argument("model", required=False)
@click.option("--family", default="gemma3", show_default=True, type=click.Choice(["gemma3", "qwen2_5_vl"]),
              help="Without MODEL: the family of the random-weight model built for the run.")
@click.option("--size", default="bench", show_default=True, type=click.Choice(["bench", "tiny"]),
              help="Without MODEL: its size (bench: 256 image tokens per picture; tiny: for tests).")
@click.option("--model-dir", default=None, type=click.Path(file_okay=False),
              help="Without MODEL: build it here (kept; reused when present) instead of a temporary folder.")
@click.option("--scenario", "scenarios", multiple=True, type=click.Choice(["concurrent", "multiturn", "compare"]),
              help="Run only these (repeatable; default: all).")
@click.option("--conc", default=8, show_default=True, type=click.IntRange(1),
              help="concurrent: image requests at once.")
@click.option("--max-tokens", default=64, show_default=True, type=click.IntRange(1), help="Tokens per request.")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1),
              help="concurrent: alternating image/text rounds; medians are reported.")
@click.option("--turns", default=4, show_default=True, type=click.IntRange(2), help="multiturn: turns.")
@click.option("--compare-conc", default="1,3,8", show_default=True, callback=_conc_list,
              help="compare: concurrency levels, comma-separated.")
@click.option("--compare-requests", default=0, type=click.IntRange(0),
              help="compare: requests per level and round (default: max(2*conc, 4)).")
@click.option("--compare-rounds", default=2, show_default=True, type=click.IntRange(1),
              help="compare: rounds per level, the servers taking turns; medians are reported.")
@click.option("--mlx-vlm/--no-mlx-vlm", default=True, show_default=True,
              help="compare: also run mlx_vlm.server on the same model folder.")
@click.option("--picture-side", default=448, show_default=True, type=click.IntRange(16),
              help="Side in pixels of the generated test pictures.")
@click.option("--log-dir", default=None, type=click.Path(file_okay=False), help="Keep the servers' logs here.")
@click.option("--label", default="", help="Free text copied into every JSON line.")
@click.option("--json-out", default=None, type=click.Path(dir_okay=False), help="Also append the JSON lines here.")
def vision_cmd(model, family, size, model_dir, scenarios, conc, max_tokens, repeats, turns, compare_conc,
               compare_requests, compare_rounds, mlx_vlm, picture_side, log_dir, label, json_out):
    """Vision targets against real servers started here on MODEL (a vision model folder; default: a
    random-weight one built for the run): concurrent image vs equal-length text decode tok/s, a
    repeated picture's turn-N vs turn-1 TTFT, and image requests/s and TTFT next to mlx_vlm.server."""
    from ..bench.vision import VisionBenchConfig, vision_bench

    cfg = VisionBenchConfig(model=model, family=family, size=size, model_dir=model_dir, conc=conc,
                            max_tokens=max_tokens, repeats=repeats, turns=turns, compare_conc=compare_conc,
                            compare_requests=compare_requests, compare_rounds=compare_rounds, mlx_vlm=mlx_vlm,
                            picture_side=picture_side, log_dir=log_dir, label=label)
    if scenarios:
        cfg.scenarios = tuple(scenarios)
    try:
        vision_bench(cfg, _reporter(json_out))
    except RuntimeError as exc:  # a server that did not start, a conversation turn that failed
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
