"""The paged KV cache: block pool, prefix sharing, isolation, eviction,
exhaustion, preemption, cache_salt and the cache policies (engine level; the
server-level checks are in test_server_kv_cache.py)."""

from __future__ import annotations

import asyncio
import random

import pytest

from vllm_mlx.core import AsyncEngine, Engine, EngineConfig, SamplingParams
from vllm_mlx.core.kv_blocks import Block, BlockPool
from vllm_mlx.core.prefix_cache import extend_hashes
from vllm_mlx.plugins import PluginManager
from vllm_mlx.plugins.interfaces import CacheOptions

GREEDY = SamplingParams(max_tokens=16, temperature=0.0)


def token_lists(vocab: int, count: int, lo: int, hi: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(5, vocab) for _ in range(rng.randrange(lo, hi))] for _ in range(count)]


def run_all(engine: Engine, prompts: list[list[int]], params: SamplingParams = GREEDY, concurrent=True, **kw):
    ae = AsyncEngine(engine)

    async def go():
        if concurrent:
            return await asyncio.gather(*(ae.generate_all(p, _with(params, **kw)) for p in prompts))
        return [await ae.generate_all(p, _with(params, **kw)) for p in prompts]

    return [r[0] for r in asyncio.run(go())]


def _with(params: SamplingParams, **changes) -> SamplingParams:
    fields = {name: getattr(params, name) for name in params.__slots__}
    fields.update(changes)
    return SamplingParams(**fields)


@pytest.fixture(scope="module")
def vocab(mlx_model) -> int:
    return mlx_model[0].args.vocab_size


def make_engine(mlx_model, **cfg) -> Engine:
    model, tok = mlx_model
    cfg.setdefault("max_num_seqs", 32)
    cfg.setdefault("prefill_step_size", 64)
    cfg.setdefault("block_size", 16)
    return Engine(model, tok, EngineConfig(**cfg)).start()


@pytest.fixture(scope="module")
def plain(mlx_model):
    """No prefix caching, ample memory: the reference for every output below."""
    eng = make_engine(mlx_model, prefix_caching=False)
    yield eng
    eng.shutdown()


@pytest.fixture(scope="module")
def shared_workload(vocab):
    prefix = token_lists(vocab, 1, 300, 301, seed=1)[0]
    suffixes = token_lists(vocab, 32, 1, 40, seed=2)
    return [prefix + s for s in suffixes]


@pytest.fixture(scope="module")
def reference(plain, shared_workload):
    return [r.token_ids for r in run_all(plain, shared_workload, concurrent=False)]


# -- the block pool ----------------------------------------------------------
def test_block_hashes_chain_and_salt():
    toks = list(range(100))
    h = extend_hashes([], toks, 16, None)
    assert len(h) == 6  # full blocks only
    assert extend_hashes(h[:3], toks, 16, None) == h  # extending is the same as hashing at once
    other = extend_hashes([], [999] + toks[1:], 16, None)
    assert not set(h) & set(other)  # a changed first token changes every later block (chained)
    assert not set(h) & set(extend_hashes([], toks, 16, "tenant-a"))


def test_pool_reserves_evicts_lru_and_respects_pins():
    evicted = []
    pool = BlockPool(capacity=4, block_size=8, on_evict=evicted.append)
    blocks = [Block(bytes([i]), None, (), []) for i in range(3)]
    for b in blocks:
        assert pool.insert(b)
    assert pool.free == 1 and pool.can_reserve(4) and not pool.can_reserve(5)
    pool.acquire([blocks[0]])  # in use: not evictable; also most recently used
    assert pool.reserve(2)  # one free + evicts the least recently used unpinned block
    assert evicted == [blocks[1]] and pool.working == 2
    assert not pool.reserve(2)  # only blocks[2] is evictable
    pool.release([blocks[0]])
    assert pool.reserve(2) and pool.free == 0 and len(pool.cached) == 0
    pool.unreserve(4)
    assert pool.free == 4


# -- sharing and isolation -----------------------------------------------------
def test_shared_prefix_is_reused_and_outputs_are_unchanged(mlx_model, shared_workload, reference):
    eng = make_engine(mlx_model)
    try:
        first = run_all(eng, shared_workload[:1])
        assert first[0].cached_tokens == 0
        rest = run_all(eng, shared_workload[1:8], concurrent=False)
        assert [r.token_ids for r in first + rest] == reference[:8]
        # The whole 300-token prefix comes from the cache: 18 full blocks, and the first
        # 12 tokens of the block after them, which the first request cached with its suffix.
        assert all(300 <= r.cached_tokens < len(p) for r, p in zip(rest, shared_workload[1:8]))
        again = run_all(eng, shared_workload[:1])[0]  # an exact resend recomputes only the last token
        assert again.cached_tokens == len(shared_workload[0]) - 1 and again.token_ids == reference[0]
        stats = eng.kv_stats()
        assert stats["prefix_hits"] >= 7 * 300 and stats["blocks_working"] == 0
    finally:
        eng.shutdown()


def test_32_concurrent_requests_sharing_a_prefix_each_get_their_solo_output(mlx_model, shared_workload, reference):
    eng = make_engine(mlx_model)
    try:
        out = run_all(eng, shared_workload)
        assert [r.token_ids for r in out] == reference
        # They arrived together: one computed the prefix, the others waited for its blocks.
        assert sum(r.cached_tokens > 0 for r in out) == 31
    finally:
        eng.shutdown()


def test_cache_salt_separates_tenants(mlx_model, shared_workload, reference):
    eng = make_engine(mlx_model)
    try:
        prompt = shared_workload[0]
        a = run_all(eng, [prompt], cache_salt="tenant-a")[0]
        b = run_all(eng, [prompt], cache_salt="tenant-b")[0]
        a2 = run_all(eng, [prompt], cache_salt="tenant-a")[0]
        unsalted = run_all(eng, [prompt])[0]
        assert (a.cached_tokens, b.cached_tokens, unsalted.cached_tokens) == (0, 0, 0)
        assert a2.cached_tokens == len(prompt) - 1
        assert a.token_ids == b.token_ids == a2.token_ids == unsalted.token_ids == reference[0]
    finally:
        eng.shutdown()


# -- memory: eviction, exhaustion, preemption ------------------------------------
def kv_bytes(mlx_model, blocks: int, block_size: int = 16) -> str:
    probe = make_engine(mlx_model, max_num_seqs=1)
    per_token = probe.kv.bytes_per_token
    probe.shutdown()
    return f"{blocks * block_size * per_token / (1 << 20):.6f}MiB"


def test_eviction_keeps_the_pool_within_budget(mlx_model, vocab, plain):
    prompts = token_lists(vocab, 12, 60, 100, seed=3)
    want = [r.token_ids for r in run_all(plain, prompts, concurrent=False)]
    eng = make_engine(mlx_model, kv_cache_memory=kv_bytes(mlx_model, 24))
    try:
        got = run_all(eng, prompts, concurrent=False)
        assert [r.token_ids for r in got] == want
        stats = eng.kv_stats()
        assert stats["evictions"] > 0 and stats["blocks_cached"] <= stats["blocks_total"] == 24
        # The oldest prompt was evicted; the newest is still cached.
        assert run_all(eng, prompts[:1])[0].cached_tokens == 0
        assert run_all(eng, prompts[-1:])[0].cached_tokens > 0
    finally:
        eng.shutdown()


@pytest.mark.parametrize("prefix_caching", [True, False])
def test_exhaustion_waits_and_preempts_instead_of_failing(mlx_model, vocab, plain, prefix_caching):
    prompts = token_lists(vocab, 24, 40, 80, seed=4)
    params = _with(GREEDY, max_tokens=48)
    ref = run_all(plain, prompts, params)
    want = [r.token_ids for r in ref]
    # 40 blocks of 16 tokens: room for about five of these sequences at a time, not 24.
    eng = make_engine(mlx_model, kv_cache_memory=kv_bytes(mlx_model, 40), prefix_caching=prefix_caching)
    try:
        got = run_all(eng, prompts, params)
        assert [r.token_ids for r in got] == want
        assert [r.finish_reason for r in got] == [r.finish_reason for r in ref]
        stats = eng.kv_stats()
        assert stats["blocks_working"] == 0
        if not prefix_caching:
            assert stats["preemptions"] > 0
        assert eng.state == "running"
    finally:
        eng.shutdown()


@pytest.mark.parametrize("prefix_caching", [False, True])
def test_preemption_resumes_seeded_sampling_exactly(mlx_model, vocab, plain, prefix_caching):
    prompts = token_lists(vocab, 12, 40, 60, seed=5)
    params = SamplingParams(max_tokens=64, temperature=0.8, seed=7, presence_penalty=0.5, min_tokens=40)
    want = [r.token_ids for r in run_all(plain, prompts, params)]
    eng = make_engine(mlx_model, kv_cache_memory=kv_bytes(mlx_model, 24), prefix_caching=prefix_caching)
    try:
        got = run_all(eng, prompts, params)
        assert eng.kv_stats()["preemptions"] > 0
        assert [r.token_ids for r in got] == want
    finally:
        eng.shutdown()


def test_a_prompt_larger_than_the_whole_cache_is_refused_not_fatal(mlx_model, vocab):
    eng = make_engine(mlx_model, kv_cache_memory=kv_bytes(mlx_model, 4))
    try:
        big, small = token_lists(vocab, 1, 100, 101, seed=6)[0], [7, 8, 9]
        out = run_all(eng, [big, small], _with(GREEDY, max_tokens=4))
        assert out[0].finish_reason == "error" and "raise --kv-cache-memory" in out[0].error
        assert out[1].finish_reason == "length"
    finally:
        eng.shutdown()


# -- cache policies ----------------------------------------------------------------
def policy_engine(mlx_model, name: str, options: CacheOptions, **cfg) -> Engine:
    model = mlx_model[0]
    policy = PluginManager().cache_policy_for(name, model, {"model_type": model.model_type})
    return make_engine(mlx_model, make_cache=lambda: policy.make_cache(model, options), **cfg)


@pytest.fixture(scope="module")
def quant_model(tmp_path_factory):
    from mlx_lm import load

    from model_factory import build_random_model

    # Quantization groups are at least 32 wide, so the heads must be too.
    return load(str(build_random_model(tmp_path_factory.mktemp("models") / "qkv", extra={"head_dim": 32})))


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_kv_cache_batches_shares_and_saves_memory(quant_model, shared_workload, bits):
    plain = policy_engine(quant_model, "default", CacheOptions())
    eng = policy_engine(quant_model, "quantized", CacheOptions(kv_bits=bits, kv_group_size=32))
    try:
        assert eng.kv.prefix_caching and eng.kv.bytes_per_token < plain.kv.bytes_per_token / 2
        alone = [r.token_ids for r in run_all(eng, shared_workload[:1])]
        together = run_all(eng, shared_workload[:8])
        assert together[0].token_ids == alone[0]  # batching does not change a quantized request either
        assert all(r.cached_tokens > 0 for r in together)
        assert all(len(r.token_ids) == GREEDY.max_tokens for r in together)
        if bits == 8:  # 8-bit KV is close enough that this random model's greedy output does not change
            assert alone == [r.token_ids for r in run_all(plain, shared_workload[:1])]
    finally:
        eng.shutdown()
        plain.shutdown()


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory):
    from mlx_lm import load

    from model_factory import build_random_model

    path = build_random_model(tmp_path_factory.mktemp("models") / "gemma3", arch="gemma3_text", extra={
        "sliding_window": 16, "sliding_window_pattern": 2, "query_pre_attn_scalar": 16, "head_dim": 16,
        "num_hidden_layers": 4})
    return load(str(path))


def test_gemma3_policy_sliding_window_zero_gives_full_caches_and_same_answers(gemma3):
    model, tok = gemma3
    pm = PluginManager()
    policy = pm.cache_policy_for("auto", model, {"model_type": "gemma3_text"})
    assert policy.name == "gemma3"
    rng = random.Random(8)
    prefix = [rng.randrange(5, model.args.vocab_size) for _ in range(80)]  # far beyond the 16-token window
    prompts = [prefix + [rng.randrange(5, model.args.vocab_size) for _ in range(n)] for n in (3, 9, 20, 31)]
    windowed = Engine(model, tok, EngineConfig(block_size=16, prefill_step_size=32, make_cache=lambda: policy.make_cache(
        model, CacheOptions()))).start()
    full = Engine(model, tok, EngineConfig(block_size=16, prefill_step_size=32, make_cache=lambda: policy.make_cache(
        model, CacheOptions(sliding_window=0)))).start()
    try:
        # Rotating layers cannot be shared by blocks: that engine runs without prefix caching.
        assert not windowed.kv.prefix_caching and "RotatingKVCache" in windowed.kv.why_not_sharing
        assert full.kv.prefix_caching
        a = run_all(windowed, prompts, concurrent=False)
        b = run_all(full, prompts, concurrent=False)
        assert [r.token_ids for r in a] == [r.token_ids for r in b]
        assert [r.cached_tokens for r in b][1:] == [80, 80, 80]
        with pytest.raises(ValueError, match="smaller than the model's attention window"):
            policy.make_cache(model, CacheOptions(sliding_window=8))
    finally:
        windowed.shutdown()
        full.shutdown()


def test_ten_turn_conversation_prefills_only_new_tokens_plus_one_block(mlx_model, vocab):
    """Each turn resends the whole conversation, including the model's own answer."""
    eng = make_engine(mlx_model, block_size=16)
    try:
        rng = random.Random(9)
        convo = [rng.randrange(5, vocab) for _ in range(120)]  # system prompt + first user message
        new = 0
        for turn in range(10):
            r = run_all(eng, [convo], _with(GREEDY, max_tokens=12, ignore_eos=True))[0]
            prefilled = len(convo) - r.cached_tokens
            if turn:
                assert prefilled == new, (turn, prefilled, new)  # exactly the new tokens
            new = rng.randrange(5, 30)
            convo = convo + r.token_ids + [rng.randrange(5, vocab) for _ in range(new)]
    finally:
        eng.shutdown()


def test_prefix_cache_dir_survives_a_restart_and_skips_corrupt_files(mlx_model, shared_workload, reference,
                                                                     tmp_path, caplog):
    folder = tmp_path / "prefix-cache"
    first = make_engine(mlx_model, prefix_cache_dir=str(folder), cache_fingerprint="m1")
    run_all(first, shared_workload[:1])
    first.shutdown()  # writes the cached blocks
    files = sorted(folder.glob("*.safetensors"))
    assert len(files) == (len(shared_workload[0]) + GREEDY.max_tokens) // 16  # prompt and answer

    second = make_engine(mlx_model, prefix_cache_dir=str(folder), cache_fingerprint="m1")
    try:
        r = run_all(second, shared_workload[1:2])[0]
        assert r.cached_tokens == 288 and r.token_ids == reference[1]
    finally:
        second.shutdown()

    # Flip bytes in the middle of one block's data: that block and its successors are not used.
    victim = folder / files[5].name
    raw = bytearray(victim.read_bytes())
    raw[-64] ^= 0xFF
    victim.write_bytes(bytes(raw))
    third = make_engine(mlx_model, prefix_cache_dir=str(folder), cache_fingerprint="m1")
    try:
        with caplog.at_level("WARNING", logger="vllm_mlx.prefix_store"):
            rs = run_all(third, shared_workload[2:3])[0]
        assert rs.token_ids == reference[2]
        assert 0 < rs.cached_tokens < 288 and "skipping prefix cache file" in caplog.text
    finally:
        third.shutdown()

    other = make_engine(mlx_model, prefix_cache_dir=str(folder), cache_fingerprint="another-model")
    try:
        assert run_all(other, shared_workload[3:4])[0].cached_tokens == 0
    finally:
        other.shutdown()
