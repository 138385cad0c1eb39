"""Device turns: first come, first served between engine threads; units that take turns
compute what they computed before."""

from __future__ import annotations

import threading
import time

import mlx.core as mx
import numpy as np

from vllm_mlx.core.device_turns import DeviceTurns
from vllm_mlx.speech.turns import take_turns
from vllm_mlx.speech.whisper_units import split_encoder_block


def test_two_busy_threads_alternate_turn_by_turn():
    device, order = DeviceTurns(), []
    start = threading.Barrier(2)

    def work(who):
        start.wait()
        for _ in range(20):
            with device.turn(who):
                order.append(who)
                time.sleep(0.002)

    threads = [threading.Thread(target=work, args=(w,)) for w in ("llm", "whisper")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(order) == ["llm"] * 20 + ["whisper"] * 20
    # once both are in line they alternate: no thread takes two turns in a row while the other waits
    both = order[2:-2]
    assert all(a != b for a, b in zip(both, both[1:])), order
    assert device.stats()["handovers"] >= 30


def test_a_turn_inside_a_turn_is_part_of_it():
    device = DeviceTurns()
    with device.turn("a"):
        with device.turn("a"):
            pass
    stats = device.stats()
    assert (stats["turns"], stats["handovers"], stats["waiting"], list(stats["longest_turn_ms"])) == (1, 0, 0, ["a"])
    assert not device.contended("a")


def test_whisper_units_compute_the_same_in_turns(whisper_dir):
    from vllm_mlx.model_source import load_model
    from vllm_mlx.plugins import PluginManager

    loaded = load_model(str(whisper_dir), PluginManager(), kinds=("stt",))
    model = loaded.model
    mel = mx.random.normal((1, 3000, 80), key=mx.random.key(1))
    before = model.encoder(mel)
    block = model.encoder.blocks[0]
    x = np.array(mx.random.normal((1, 1500, model.dims.n_audio_state), key=mx.random.key(2)))
    whole = block(mx.array(x))[0]  # (the block adds to its argument in place: each call gets its own)
    device = DeviceTurns(recent=60.0)
    assert take_turns(model, loaded.turn_units, device, "whisper") == len(model.encoder.blocks) + 1
    assert type(model.decoder).__name__ == "TextDecoderOnTurns" and "decoder.token_embedding.weight" in dict(
        __import__("mlx.utils", fromlist=["tree_flatten"]).tree_flatten(model.parameters()))
    chunked = split_encoder_block(block, lambda: device.turn("whisper"), mx.array(x))[0]
    assert np.allclose(np.array(whole), np.array(chunked), atol=1e-4)
    with device.turn("llm"):  # another engine was busy a moment ago: encoder blocks now run in chunks
        pass
    turns = device.stats()["turns"]
    after = model.encoder(mel)
    assert device.stats()["turns"] - turns > 2 * len(model.encoder.blocks)  # several turns per block
    assert np.allclose(np.array(before), np.array(after), atol=1e-4)


def _child_takes_turns(device, log, count):
    for _ in range(10):
        with device.turn("child"):  # the log is written inside turns: their true order
            log[count.value] = 1
            count.value += 1
            time.sleep(0.002)


def test_an_engine_process_takes_turns_with_threads():
    """--engine-process: the LLM's engine in a child process and the speech threads of the
    server share one line (the state is in shared memory)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    device, log, count = DeviceTurns(), ctx.RawArray("i", 100_000), ctx.RawValue("i", 0)
    device.register("child")
    child = ctx.Process(target=_child_takes_turns, args=(device, log, count))
    child.start()
    deadline = time.monotonic() + 120
    while child.is_alive() and time.monotonic() < deadline and count.value < 99_000:
        with device.turn("thread"):  # busy until the child has had its 10 turns
            log[count.value] = 0
            count.value += 1
            time.sleep(0.002)
    child.join(60)
    seen = "".join("c" if x else "t" for x in log[:count.value])
    assert child.exitcode == 0 and seen.count("c") == 10
    # once the child was in line, it never waited behind two thread turns
    between = seen[seen.index("c"):seen.rindex("c") + 1]  # (after its last turn the child takes a while to exit)
    assert max(len(run) for run in between.split("c")) <= 1, between
    assert device.stats()["handovers"] >= 10
