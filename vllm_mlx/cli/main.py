"""``vllm-mlx``: serve a model, list plugins, run benchmarks."""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from .. import __version__
from .mcp import mcp, mcp_serve_kwargs, mcp_serve_options


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vllm-mlx")
def cli() -> None:
    """vllm-mlx: an OpenAI-compatible inference server on MLX, with continuous batching.

    Start with `vllm-mlx serve` (no model: a tiny built-in demo model, works offline),
    then point any OpenAI SDK at http://127.0.0.1:8000/v1.
    """


def _json_object(ctx, param, value):
    if value is None:
        return {}
    try:
        obj = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise click.BadParameter("must be a JSON object")
    return obj


def _limits(ctx, param, value):
    from ..server.media import parse_limits

    try:
        return parse_limits(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@click.argument("models", nargs=-1, metavar="[MODEL]...")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--api-key", envvar="VLLM_MLX_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' or 'x-api-key: KEY' on /v1 routes (env VLLM_MLX_API_KEY).")
@click.option("--served-model-name", "served_model_names", multiple=True,
              help="Name clients use in 'model' (default: the MODEL argument); repeat it for several models, in "
                   "the same order. 'default' names the first model.")
@click.option("--max-audio-bytes", default=25 * 1024 * 1024, show_default=True, type=click.IntRange(1),
              help="Largest audio upload for transcription (413 beyond).")
@click.option("--device-turns/--no-device-turns", default=True, show_default=True,
              help="Several models: their engines take turns on the device (an LLM step, a slice of a "
                   "transcription window) so none starves the others. Off: they run side by side unchecked.")
@click.option("--max-num-seqs", default=64, show_default=True, type=click.IntRange(1, 4096),
              help="Most sequences decoded together in one batch; more wait their turn.")
@click.option("--max-queue", default=1024, show_default=True, type=click.IntRange(0),
              help="Sequences allowed to wait beyond --max-num-seqs; past that, requests get 429 + Retry-After.")
@click.option("--max-model-len", default=None, type=click.IntRange(16),
              help="Context window in tokens (prompt + completion); default: the model's own.")
@click.option("--prefill-step-size", default=512, show_default=True, type=click.IntRange(16),
              help="Prompt tokens prefilled per step; long prompts are split so decoding keeps flowing.")
@click.option("--prefill-batch-size", default=None, type=click.IntRange(1),
              help="Most new prompts prefilled together in one step (default: 32 on a GPU, 8 on the CPU). "
                   "Bigger means fewer, larger prefills: more throughput under bursts, longer decode pauses.")
@click.option("--engine-process/--no-engine-process", default=None,
              help="Run a text model's engine in a process of its own, apart from the HTTP server, so streaming "
                   "many responses never takes the interpreter from the engine. Default: on when MLX runs on a "
                   "GPU (Apple silicon, CUDA), off on the CPU.")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE_OR_FILE",
              help="Load a plugin from a dotted module or a .py file (repeatable).")
@click.option("--reasoning-parser", default=None,
              help="Split reasoning from the answer (e.g. qwen3, deepseek_r1); default: the model family's; "
                   "'none' turns it off.")
@click.option("--tool-call-parser", default=None,
              help="Parse tool calls from model output (hermes, qwen3_coder, llama3_json, mistral, deepseek_v3, "
                   "gemma3, ...); default: detected from the chat template, else the model family's; 'none' "
                   "passes tools to the model and returns its reply unparsed.")
@click.option("--model-alias", "model_aliases", multiple=True, metavar="NAME=SERVED",
              help="Also accept NAME in 'model' for the served model (repeatable; NAME may be a glob, e.g. "
                   "'claude-*=default' for Claude Code).")
@click.option("--ping-interval", default=10.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Anthropic streams: send a 'ping' event this often (seconds) while a request waits for "
                   "its first token (queue, long prefill).")
@click.option("--enable-auto-tool-choice", is_flag=True,
              help="Accepted for vLLM compatibility: tool calls are parsed whenever a tool-call parser is active.")
@click.option("--default-chat-template-kwargs", default=None, callback=_json_object, metavar="JSON",
              help='Chat template arguments for every request, e.g. \'{"enable_thinking": false}\'.')
@click.option("--allowed-origins", "allowed_origins", multiple=True, metavar="ORIGIN",
              help="Allow browser requests (CORS) from this origin, e.g. http://localhost:3000 or '*' "
                   "(repeatable; default: CORS off).")
@click.option("--cache-policy", default="auto", show_default=True,
              help="Cache policy plugin: which KV cache each layer uses (default, quantized, gemma3, ...); "
                   "auto picks the model family's.")
@click.option("--kv-cache-memory", default=None, metavar="SIZE",
              help="KV cache budget: GiB (8), MiB (512MiB) or a share of memory (40%%). Default: 60%% of what "
                   "the device may use, minus the weights.")
@click.option("--block-size", default=32, show_default=True, type=click.IntRange(1, 1024),
              help="Tokens per KV cache block (the unit of memory and of prefix sharing).")
@click.option("--enable-prefix-caching/--no-enable-prefix-caching", default=True, show_default=True,
              help="Reuse the KV of prompt prefixes other requests already computed.")
@click.option("--kv-cache-bits", "--kv-bits", "kv_cache_bits", default=None, type=click.Choice(["4", "8"]),
              help="Quantize the KV cache to this many bits (less memory, slightly different output).")
@click.option("--kv-cache-group-size", default=64, show_default=True, type=click.Choice(["32", "64", "128"]),
              help="Quantization group size for --kv-cache-bits.")
@click.option("--sliding-window", default=None, type=click.IntRange(0),
              help="Gemma 3: cache size of the sliding-window layers; 0 = full cache on every layer "
                   "(long contexts, full prefix sharing). Default: the model's window.")
@click.option("--prefix-cache-dir", default=None, type=click.Path(file_okay=False),
              help="Keep prefix-cache blocks in this folder across restarts (written when evicted and at "
                   "shutdown, verified when read).")
@click.option("--request-timeout", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="End a request still unfinished this many seconds after it arrived (408, or an error event "
                   "in a stream); 0 = no limit.")
@click.option("--shutdown-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0),
              help="On SIGTERM/SIGINT: stop accepting, give in-flight requests this many seconds to finish, "
                   "then cancel them and exit 0.")
@click.option("--runner", default="auto", show_default=True, type=click.Choice(["auto", "generate", "pooling"]),
              help="pooling: serve MODEL as an embedding model (/v1/embeddings); generate: as an LLM; auto: an "
                   "embedding model when it has sentence-transformers metadata (modules.json with Pooling).")
@click.option("--continuous-batching", is_flag=True,
              help="Accepted for the older vllm-mlx's command lines: batching is always continuous here.")
@click.option("--model", "model_option", default=None, metavar="MODEL",
              help="The MODEL argument, spelled as an option (the older vllm-mlx's `--model`).")
@click.option("--mllm", is_flag=True, help="Accepted for older command lines: vision models are detected.")
@click.option("--limit-mm-per-prompt", default=None, callback=_limits, metavar="LIMITS",
              help='Vision models: most media per request, as JSON (\'{"image": 4, "video": 1}\') or '
                   "image=4,video=1 (default: 8 images, 1 video).")
@click.option("--allowed-media-domains", multiple=True, metavar="HOST",
              help="Vision models: fetch image URLs only from this host (repeatable; default: any host).")
@click.option("--allowed-local-media-path", default=None, type=click.Path(file_okay=False, exists=True),
              help="Vision models: allow file:// image URLs inside this folder (default: no local files).")
@click.option("--media-max-bytes", default=20 << 20, show_default=True, type=click.IntRange(1),
              help="Vision models: largest image accepted (fetched, inline or local), in bytes.")
@click.option("--media-fetch-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Vision models: seconds to fetch one image URL.")
@click.option("--tensor-parallel-size", "-tp", default=1, show_default=True, type=click.IntRange(1),
              help="Split each layer across this many ranks (start them with `vllm-mlx launch`); see "
                   "docs/guides/distributed.md.")
@click.option("--pipeline-parallel-size", "-pp", default=1, show_default=True, type=click.IntRange(1),
              help="Split the layers into this many consecutive stages, one per rank (`vllm-mlx launch`).")
@click.option("--distributed-timeout", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="Distributed serving: end the group (requests fail, exit status 3) when a step makes no "
                   "progress for this many seconds (a hung rank or a stalled link).")
@click.option("--responses-store-dir", default=None, type=click.Path(file_okay=False),
              help="Responses API: also keep stored responses in this folder, so previous_response_id works "
                   "across restarts (default: memory only).")
@click.option("--responses-store-max", default=1000, show_default=True, type=click.IntRange(1),
              help="Responses API: the most stored responses; the least recently used are dropped.")
@click.option("--responses-store-ttl", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Responses API: forget a stored response this many seconds after it was made; 0 = never.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]), help="Logging detail.")
@mcp_serve_options
def serve(models, host, port, api_key, served_model_names, max_audio_bytes, device_turns, max_num_seqs, max_queue,
          max_model_len, prefill_step_size, prefill_batch_size, engine_process, plugins, reasoning_parser,
          tool_call_parser, model_aliases, ping_interval,
          enable_auto_tool_choice, default_chat_template_kwargs, allowed_origins,
          cache_policy, kv_cache_memory, block_size, enable_prefix_caching, kv_cache_bits, kv_cache_group_size,
          sliding_window, prefix_cache_dir, request_timeout, shutdown_timeout, runner, continuous_batching,
          model_option, mllm, limit_mm_per_prompt, allowed_media_domains, allowed_local_media_path,
          media_max_bytes, media_fetch_timeout, responses_store_dir, responses_store_max, responses_store_ttl,
          tensor_parallel_size, pipeline_parallel_size, distributed_timeout,
          log_level, **mcp_options):
    """Serve MODEL (a local folder or a Hugging Face repo id) on an OpenAI-compatible API.

    Several MODELs make one server for all: an LLM, a Whisper speech-to-text and a Kokoro
    text-to-speech model, say; requests pick one by its served name. With no MODEL, serves
    the built-in demo model (built once into the user cache, offline).
    """
    from ..mcp_host import McpConfigError
    from ..model_source import ModelSourceError
    from ..plugins import PluginError
    from ..serving import ServeOptions, serve as run_server

    rank = f"rank {os.environ['MLX_RANK']} " if os.environ.get("MLX_RANK") else ""
    logging.basicConfig(level=log_level.upper(), format=f"%(asctime)s {rank}%(levelname)s %(name)s: %(message)s")
    sliding_window = _legacy_sliding_window(sliding_window)
    if model_option and models and model_option not in models:
        raise click.UsageError(f"two models given: {models[0]!r} and --model {model_option!r}")
    models = models or ((model_option,) if model_option else ())
    opts = ServeOptions(
        models=list(models), served_model_names=list(served_model_names), max_audio_bytes=max_audio_bytes,
        device_turns=device_turns, host=host, port=port, api_key=api_key or None,
        max_num_seqs=max_num_seqs, max_queue=max_queue, max_model_len=max_model_len, prefill_step_size=prefill_step_size,
        prefill_batch_size=prefill_batch_size, engine_process=engine_process, plugins=list(plugins), reasoning_parser=reasoning_parser, tool_call_parser=tool_call_parser,
        enable_auto_tool_choice=enable_auto_tool_choice,
        default_chat_template_kwargs=default_chat_template_kwargs, cache_policy=cache_policy, log_level=log_level,
        allowed_origins=list(allowed_origins), kv_cache_memory=kv_cache_memory, block_size=block_size,
        enable_prefix_caching=enable_prefix_caching, kv_cache_bits=int(kv_cache_bits) if kv_cache_bits else None,
        kv_cache_group_size=int(kv_cache_group_size), sliding_window=sliding_window,
        prefix_cache_dir=prefix_cache_dir, shutdown_timeout=shutdown_timeout,
        request_timeout=request_timeout, runner=runner, model_aliases=list(model_aliases),
        ping_interval=ping_interval, limit_mm_per_prompt=limit_mm_per_prompt,
        allowed_media_domains=list(allowed_media_domains), allowed_local_media_path=allowed_local_media_path,
        media_fetch_timeout=media_fetch_timeout, media_max_bytes=media_max_bytes,
        tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size,
        distributed_timeout=distributed_timeout,
        responses_store_dir=responses_store_dir, responses_store_max=responses_store_max,
        responses_store_ttl=responses_store_ttl,
        **mcp_serve_kwargs(mcp_options),
    )
    try:
        status = run_server(opts)
    except (ModelSourceError, PluginError, McpConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if status:
        sys.exit(status)


def _legacy_sliding_window(flag: int | None) -> int | None:
    """The older vllm-mlx read GEMMA3_SLIDING_WINDOW=N (0 = full cache); honour it when
    --sliding-window is not given, and say which flag replaces it."""
    env = os.environ.get("GEMMA3_SLIDING_WINDOW")
    if flag is not None or env is None:
        return flag
    try:
        value = int(env)
    except ValueError:
        raise click.BadParameter(f"GEMMA3_SLIDING_WINDOW={env!r} is not an integer") from None
    click.echo(f"note: GEMMA3_SLIDING_WINDOW={value} is read as --sliding-window {value}; prefer the flag.", err=True)
    return value


@cli.command("plugins")
@click.option("--plugin", "extra", multiple=True, metavar="MODULE_OR_FILE", help="Also load this plugin.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_cmd(extra, as_json):
    """List every loaded plugin and what it provides."""
    from ..plugins import PluginError, PluginManager

    try:
        pm = PluginManager(extra=list(extra))
    except PluginError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    infos = pm.plugins()
    if as_json:
        click.echo(json.dumps([{"name": p.name, "source": p.source, "provides": p.provides} for p in infos], indent=2))
        return
    kinds = {loader.name: loader.kind for loader in pm.model_loaders()}
    for p in infos:
        provided = "; ".join(
            f"{kind}: " + ", ".join(f"{n} ({kinds[n]})" if kind == "model_loaders" and n in kinds else n for n in names)
            for kind, names in p.provides.items()) or "nothing"
        click.echo(f"{p.name:<20} {p.source:<12} {provided}")


from .bench import bench  # noqa: E402  (registers the bench group)
from .launch import launch  # noqa: E402

cli.add_command(bench)
cli.add_command(mcp)
cli.add_command(launch)

if __name__ == "__main__":
    cli()
