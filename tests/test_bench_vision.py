"""`vllm-mlx bench vision` in a tiny configuration: both servers start on a tiny random Gemma 3,
every scenario prints its JSON line, our server answers every request (no timing checks)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_vision_tiny(tmp_path):
    out = subprocess.run([sys.executable, "-m", "vllm_mlx.cli.main", "bench", "vision", "--size", "tiny",
                          "--model-dir", str(tmp_path / "models"), "--conc", "3", "--max-tokens", "4",
                          "--repeats", "1", "--turns", "2", "--compare-conc", "1,3", "--compare-rounds", "1", "--picture-side", "64",
                          "--label", "ci", "--json-out", str(tmp_path / "out.jsonl")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines == [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert all(line["mode"] == "vision" and line["label"] == "ci" for line in lines)
    by = {}
    for line in lines:
        by.setdefault((line["scenario"], line["server"]), []).append(line)

    [conc] = by["concurrent", "vllm-mlx"]
    assert conc["image_errors"] == conc["text_errors"] == 0 and conc["conc"] == 3
    # the text twins have (within whole words) the token counts of the image prompts, which all differ
    assert len(set(conc["image_prompt_tokens"])) > 1
    for img, txt in zip(conc["image_prompt_tokens"], conc["text_prompt_tokens"]):
        assert abs(img - txt) <= 2
    assert conc["image_span_tok_s"] > 0 and conc["text_span_tok_s"] > 0 and conc["decode_rounds"] <= 1

    [turns] = by["multiturn", "vllm-mlx"]
    assert [t["turn"] for t in turns["turns"]] == [1, 2]
    assert turns["turns"][0]["cached_tokens"] == 0 < turns["turns"][1]["cached_tokens"]  # the picture's KV reused
    assert turns["ratio"] > 0

    for server in ("vllm-mlx", "mlx_vlm.server"):
        levels = by["compare", server]
        assert [line["conc"] for line in levels] == [1, 3] and all(line["media"] == "image" for line in levels)
        assert all(line["requests"] == line["rounds"] * max(2 * line["conc"], 4) for line in levels)
    assert all(line["errors"] == 0 and line["req_s"] > 0 for line in by["compare", "vllm-mlx"])
