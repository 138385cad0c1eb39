#!/usr/bin/env bash
# The issue-12 comparison on one machine, one run: mlx-lm's raw BatchGenerator, vllm-mlx in-process
# (`bench engine`), vllm-mlx over HTTP (`bench serve` and the shared loadgen), and mlx_lm.server (loadgen).
#
# usage, from the repo root on the device machine (MLX CUDA active, see docs/benchmarks/gpu.md):
#   scripts/gpu-bench.sh OUTDIR PART [CONC] [MAX_TOKENS]
# PART: model | raw | raw_ours | engine | serve | mlx_lm_server  (each fits one device call)
# env PBS: --prefill-batch-size for engine/serve (default: the engine's own, 32 on a GPU); EXTRA: more flags for engine/serve
# .devbench/ holds copies of ../shared/bench/{make_model,rawbench,loadgen}.py (shared/ does not travel).
set -u
OUT=$1; PART=$2; CONC=${3:-1,8,32,128,256}; MT=${4:-256}; PBS=${PBS:-}; EXTRA=${EXTRA:-}; PBSF=${PBS:+--prefill-batch-size $PBS}
M=/tmp/qwen3-0.6b-bf16
B=.devbench
mkdir -p "$OUT"
wait_ready() { for _ in $(seq 1 240); do curl -sf "$1/health" >/dev/null 2>&1 && return 0;
                 curl -sf "$1/v1/models" >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }
case $PART in
  model)
    [ -f $M/config.json ] || python3 $B/make_model.py $M --size qwen3-0.6b --dtype bfloat16 ;;
  raw)
    python3 $B/rawbench.py $M --conc "$CONC" --max-tokens "$MT" --prompt-tokens 80 | tee "$OUT/raw.jsonl" ;;
  raw_ours)  # vllm-mlx bench raw: BatchGenerator alone on the very prompts bench engine/serve send
    python3 -m vllm_mlx.cli.main bench raw $M --conc "$CONC" --max-tokens "$MT" --prompt-words 64 \
      --label raw-same-prompts | tee "$OUT/raw-ours.jsonl" ;;
  engine)
    python3 -m vllm_mlx.cli.main bench engine $M --conc "$CONC" --max-tokens "$MT" --max-num-seqs 256 \
      $PBSF $EXTRA --label "engine-pbs${PBS:-auto}" | tee -a "$OUT/engine.jsonl" ;;
  serve)
    python3 -m vllm_mlx.cli.main serve $M --port 8100 --max-num-seqs 256 --max-queue 4096 \
      $PBSF $EXTRA --log-level warning > "$OUT/serve-server.log" 2>&1 &
    pid=$!
    wait_ready http://127.0.0.1:8100 || { echo "server did not start"; tail -20 "$OUT/serve-server.log"; }
    python3 -m vllm_mlx.cli.main bench serve --url http://127.0.0.1:8100 --conc "$CONC" --max-tokens "$MT" \
      --label "serve-pbs${PBS:-auto}" | tee -a "$OUT/serve.jsonl"
    python3 $B/loadgen.py http://127.0.0.1:8100 default --conc "$CONC" --max-tokens "$MT" --label "ours-loadgen-pbs${PBS:-auto}" \
      | tee -a "$OUT/serve-loadgen.jsonl"
    kill $pid; wait $pid ;;
  mlx_lm_server)
    python3 -m mlx_lm.server --model $M --port 8101 > "$OUT/mlx-lm-server.log" 2>&1 &
    pid=$!
    wait_ready http://127.0.0.1:8101 || { echo "mlx_lm.server did not start"; tail -20 "$OUT/mlx-lm-server.log"; }
    python3 $B/loadgen.py http://127.0.0.1:8101 $M --conc "$CONC" --max-tokens "$MT" --label mlx_lm.server \
      | tee "$OUT/mlx-lm-server.jsonl"
    kill $pid; wait $pid ;;
esac
