"""The embedding engine with a plugin's own embedding family (the contract an
encoder plugin implements): batching, truncation, normalization, failures."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from vllm_mlx.core.embedding_engine import AsyncEmbedder, EmbeddingEngine, EmbeddingError
from vllm_mlx.model_source import load_model
from vllm_mlx.plugins import PluginManager

PLUGIN = '''
import mlx.core as mx
from vllm_mlx.plugins import hookimpl
from vllm_mlx.plugins.interfaces import EmbeddingModel, LoadedModel, ModelLoader


class BagOfTokens(EmbeddingModel):
    """Counts token ids by their value mod 8: easy to check by hand."""
    dimensions = 8
    matryoshka = [4, 8]

    def embed(self, batch):
        if any(666 in ids for ids in batch):
            raise ValueError("the number of the beast")
        return mx.array([[sum(1 for t in ids if t % 8 == k) for k in range(8)] for ids in batch], dtype=mx.float32)


class BagLoader(ModelLoader):
    name = "bag-of-tokens"
    kind = "embedding"
    priority = 50

    def detect(self, path, config):
        return config.get("model_type") == "bag-of-tokens"

    def load(self, path, config, **options):
        return LoadedModel(model=BagOfTokens(), tokenizer=None, kind="embedding", config=config)


@hookimpl
def register_model_loaders():
    return [BagLoader()]
'''


@pytest.fixture
def bag_model(tmp_path):
    (tmp_path / "bag_plugin.py").write_text(PLUGIN)
    folder = tmp_path / "bag"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bag-of-tokens"}))
    plugins = PluginManager(load_entry_points=False, extra=[str(tmp_path / "bag_plugin.py")])
    loaded = load_model(str(folder), plugins, kinds=("llm", "embedding"))
    assert loaded.kind == "embedding" and loaded.loader == "bag-of-tokens"
    return loaded.model


def unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def floats(raw: bytes) -> list[float]:
    import array

    return array.array("f", raw).tolist()


def test_requests_queued_together_run_as_one_batch(bag_model):
    engine = EmbeddingEngine(bag_model, max_batch_tokens=12 * 6, max_batch_size=16)
    front = AsyncEmbedder(engine)

    async def run():
        tasks = [asyncio.ensure_future(front.embed([[1, 9, 2], [3] * (i + 1)], dimensions=4 if i % 2 else None))
                 for i in range(6)]
        await asyncio.sleep(0)  # every request is queued before the engine thread starts
        engine.start()
        return await asyncio.gather(*tasks)

    try:
        results = asyncio.run(run())
        assert engine.counters.steps == 1 and front.in_flight == 0
        for i, (first, second) in enumerate(results):
            dims = 4 if i % 2 else 8
            assert floats(first) == pytest.approx(unit([0, 2, 1, 0, 0, 0, 0, 0][:dims]))
            assert floats(second) == pytest.approx(unit([0, 0, 0, 1, 0, 0, 0, 0][:dims]))
        assert front.metrics.prompt_tokens == sum(3 + i + 1 for i in range(6))
    finally:
        engine.shutdown()


def test_token_budget_splits_batches_and_a_failure_stays_in_its_batch(bag_model):
    engine = EmbeddingEngine(bag_model, max_batch_tokens=8, max_batch_size=16)
    front = AsyncEmbedder(engine)

    async def run():
        ok = asyncio.ensure_future(front.embed([[1], [2], [3, 4]]))  # 2 x 2 tokens: one batch, [1] and [2] first
        bad = asyncio.ensure_future(front.embed([[666] * 6]))  # over the budget with others: alone
        await asyncio.sleep(0)
        engine.start()
        return await asyncio.gather(ok, bad, return_exceptions=True)

    try:
        ok, bad = asyncio.run(run())
        assert isinstance(bad, EmbeddingError) and "beast" in str(bad)
        expected = [unit([0, 1] + [0] * 6), unit([0, 0, 1] + [0] * 5), unit([0, 0, 0, 1, 1, 0, 0, 0])]
        assert [floats(v) for v in ok] == [pytest.approx(e) for e in expected]
        assert engine.counters.requests_failed == 1 and engine.counters.steps == 1
        again = asyncio.run(front.embed([[5]]))  # the engine keeps serving
        assert floats(again[0]) == pytest.approx(unit([0] * 5 + [1, 0, 0]))
    finally:
        engine.shutdown()


def test_a_short_request_overtakes_a_bulk_one(bag_model):
    """Inputs of later requests join the pool between batches: a query arriving during a
    bulk job rides in the next batch instead of waiting for the whole job."""
    engine = EmbeddingEngine(bag_model, max_batch_tokens=8, max_batch_size=16)  # 2 bulk inputs per batch
    front = AsyncEmbedder(engine)

    async def run():
        bulk = asyncio.ensure_future(front.embed([[1, 2, 3, 4]] * 3000))
        await asyncio.sleep(0)
        engine.start()
        short = await front.embed([[7]])
        overtaken = not bulk.done()
        return overtaken, short, await bulk, await front.embed([])

    try:
        overtaken, short, bulk, empty = asyncio.run(run())
        assert overtaken and floats(short[0]) == pytest.approx(unit([0] * 7 + [1]))
        assert len(bulk) == 3000 and empty == [] and engine.counters.steps < 3000 // 2 + 5
    finally:
        engine.shutdown()
