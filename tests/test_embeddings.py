"""/v1/embeddings through the real server with the official openai client: a random
Qwen3-Embedding-style folder (sentence-transformers metadata), and a plain decoder
served with --runner pooling."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import shutil
import struct

import httpx
import openai
import pytest

from embedding_factory import build_embedding_model, reference_embedding
from hypothesis import given
from hypothesis import strategies as st
from server_process import ServerProcess
from test_fuzz import SETTINGS, check, json_values
from vllm_mlx.model_source import ModelSourceError, load_model
from vllm_mlx.plugins import PluginManager
from vllm_mlx.plugins.builtin.embeddings import POOLING_KEYS

MAX_LEN = 256
TEXTS = ["hello world", "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.",
         "Grüße aus München! 日本語", "def add(a, b):\n    return a + b\n", "1 2 3"]


@pytest.fixture(scope="session")
def embed_model_dir(tmp_path_factory):
    return build_embedding_model(tmp_path_factory.mktemp("models") / "qwen3-embed", max_len=4096)


@pytest.fixture(scope="session")
def embed_server(embed_model_dir, tmp_path_factory):
    # --prefill-step-size 16: inputs over 16 tokens run in chunks through a KV cache, so the
    # comparisons below cover chunked, padded-batch and single-input paths against each other
    log = tmp_path_factory.mktemp("logs") / "embed.log"
    srv = ServerProcess([str(embed_model_dir), "--served-model-name", "random-embed", "--max-model-len",
                         str(MAX_LEN), "--prefill-step-size", "16"], log_path=log).wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def embed(embed_server):
    return openai.OpenAI(base_url=embed_server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def close(a, b, tol=1e-5):
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < tol


def tokenize(server, text, **kw):
    return httpx.post(server.url + "/tokenize", json={"prompt": text, **kw}).json()


def test_default_base64_decodes_to_unit_vectors(embed, embed_server):
    r = embed.embeddings.create(model="random-embed", input=TEXTS)  # the SDK asks for base64
    assert [d.index for d in r.data] == list(range(len(TEXTS)))
    assert all(len(d.embedding) == 64 and abs(norm(d.embedding) - 1) < 1e-5 for d in r.data)
    assert r.model == "random-embed" and r.object == "list"
    counts = [tokenize(embed_server, t)["count"] for t in TEXTS]
    assert r.usage.prompt_tokens == r.usage.total_tokens == sum(counts)
    raw = httpx.post(embed_server.url + "/v1/embeddings",
                     json={"input": "hello world", "encoding_format": "base64"}).json()
    vec = struct.unpack(f"<{64}f", base64.b64decode(raw["data"][0]["embedding"]))
    floats = embed.embeddings.create(model="default", input="hello world", encoding_format="float")
    assert list(vec) == floats.data[0].embedding  # the same float32 values, bit for bit
    assert close(vec, r.data[0].embedding)  # alone vs in a batch: float rounding only


def test_matches_a_reference_computed_here(embed, embed_server, embed_model_dir):
    for text in (TEXTS[0], TEXTS[1]):  # short, and long enough to run in chunks
        ids = tokenize(embed_server, text)["tokens"]
        assert ids[-1] == 0  # the tokenizer appended <|endoftext|>, which is the pooled token
        got = embed.embeddings.create(model="default", input=text).data[0].embedding
        assert close(got, reference_embedding(embed_model_dir, ids))


def steps(server):
    return httpx.get(server.url + "/health").json()["engine"]["steps"]


def test_batch_equals_one_by_one(embed, embed_server):
    before = steps(embed_server)
    batch = embed.embeddings.create(model="default", input=TEXTS, encoding_format="float").data
    assert steps(embed_server) == before + 1  # one batch within the token budget
    for text, item in zip(TEXTS, batch):
        alone = embed.embeddings.create(model="default", input=text, encoding_format="float").data[0]
        assert close(item.embedding, alone.embedding)


def test_concurrent_requests_equal_single_ones(embed, embed_server):
    singles = {t: embed.embeddings.create(model="default", input=t).data[0].embedding for t in TEXTS}

    async def run():
        client = openai.AsyncOpenAI(base_url=embed_server.url + "/v1", api_key="unused", max_retries=0)
        rs = await asyncio.gather(*(client.embeddings.create(model="default", input=t) for t in TEXTS * 4))
        await client.close()
        return rs

    for text, r in zip(TEXTS * 4, asyncio.run(run())):
        assert close(r.data[0].embedding, singles[text])


def test_a_large_request(embed):
    """Over 50,000 characters: tokenized on a worker thread, many inputs, same vectors."""
    texts = [(TEXTS[i % 5] + f" #{i} ") * 4 for i in range(400)]
    assert sum(map(len, texts)) > 50_000
    r = embed.embeddings.create(model="default", input=texts)
    assert len(r.data) == 400
    for i in (0, 7, 399):
        assert close(r.data[i].embedding, embed.embeddings.create(model="default", input=texts[i]).data[0].embedding)


def test_token_id_inputs(embed, embed_server):
    ids = [tokenize(embed_server, t)["tokens"] for t in TEXTS[:3]]
    by_text = embed.embeddings.create(model="default", input=TEXTS[:3]).data
    one = embed.embeddings.create(model="default", input=ids[0])
    many = embed.embeddings.create(model="default", input=ids)
    assert one.usage.prompt_tokens == len(ids[0])
    assert close(one.data[0].embedding, by_text[0].embedding)
    assert all(close(a.embedding, b.embedding) for a, b in zip(many.data, by_text))
    without = embed.embeddings.create(model="default", input=TEXTS[0], extra_body={"add_special_tokens": False})
    assert without.usage.prompt_tokens == len(ids[0]) - 1


def test_dimensions_truncate_and_renormalize(embed):
    full = embed.embeddings.create(model="default", input=TEXTS[1], encoding_format="float").data[0].embedding
    short = embed.embeddings.create(model="default", input=TEXTS[1], dimensions=16).data[0].embedding
    head = full[:16]
    assert len(short) == 16 and abs(norm(short) - 1) < 1e-5
    assert close(short, [x / norm(head) for x in head])
    same = embed.embeddings.create(model="default", input=TEXTS[1], dimensions=64).data[0].embedding
    assert close(same, full)
    for bad in (65, 0, -3):
        with pytest.raises(openai.BadRequestError) as err:
            embed.embeddings.create(model="default", input="x", dimensions=bad)
        assert err.value.body["param"] == "dimensions"


def test_too_long_is_400_unless_truncated(embed, embed_server):
    text = " ".join(["fox"] * 400)
    with pytest.raises(openai.BadRequestError) as err:
        embed.embeddings.create(model="default", input=["ok", text])
    assert err.value.body["code"] == "context_length_exceeded" and "input[1]" in err.value.body["message"]
    ids = tokenize(embed_server, text)["tokens"]
    assert len(ids) > MAX_LEN
    r = embed.embeddings.create(model="default", input=text, extra_body={"truncate_prompt_tokens": 20})
    assert r.usage.prompt_tokens == 20
    tail = embed.embeddings.create(model="default", input=ids[-20:])  # keeps the last tokens, as vLLM does
    assert close(r.data[0].embedding, tail.data[0].embedding)
    whole = embed.embeddings.create(model="default", input=text, extra_body={"truncate_prompt_tokens": -1})
    assert whole.usage.prompt_tokens == MAX_LEN
    for bad in (0, MAX_LEN + 1):
        with pytest.raises(openai.BadRequestError):
            embed.embeddings.create(model="default", input=text, extra_body={"truncate_prompt_tokens": bad})


@pytest.mark.parametrize("body", [
    {"input": ""}, {"input": []}, {"input": [[]]}, {"input": ["a", 1]}, {"input": [1, [2]]}, {"input": [10**6]},
    {"input": [-1]}, {"input": 3}, {}, {"input": "x", "encoding_format": "binary"}, {"input": "x", "model": "nope"},
    {"input": ["x"] * 2049},
])
def test_bad_input_is_a_clear_4xx(embed_server, body):
    r = httpx.post(embed_server.url + "/v1/embeddings", json=body)
    assert r.status_code in (400, 404) and set(r.json()["error"]) == {"message", "type", "param", "code"}


embedding_bodies = st.fixed_dictionaries({"input": st.one_of(
    st.text(max_size=100), st.lists(st.text(max_size=30), max_size=4), st.lists(st.integers(-5, 10**6), max_size=8),
    st.lists(st.lists(st.integers(-5, 2000), max_size=5), max_size=3), json_values)}, optional={
    "encoding_format": st.one_of(st.sampled_from(["float", "base64"]), json_values),
    "dimensions": st.one_of(st.integers(-5, 100), json_values),
    "truncate_prompt_tokens": st.one_of(st.integers(-3, 300), json_values),
    "add_special_tokens": st.one_of(st.booleans(), json_values),
    "model": st.sampled_from(["default", "random-embed", "nope"]),
    "user": json_values,
})


@SETTINGS
@given(body=embedding_bodies)
def test_embeddings_never_5xx(embed_server, body):
    check(embed_server, "/v1/embeddings", body)


def test_huge_and_odd_inputs_never_5xx(embed_server):
    for body in [{"input": "lorem ipsum " * 100_000}, {"input": ["\u0000\ud7ff 日本語 🎉" * 20] * 3},
                 {"input": "x", "dimensions": 10**30}, {"input": [[1] * 300]}]:
        check(embed_server, "/v1/embeddings", body)


def test_models_and_generation_routes(embed, embed_server):
    assert [m.id for m in embed.models.list().data] == ["random-embed"]
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        embed.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        embed.completions.create(model="default", prompt="hi")
    health = httpx.get(embed_server.url + "/health").json()
    assert health["kind"] == "embedding" and health["engine"]["state"] == "running"
    assert "vllm:prompt_tokens_total" in httpx.get(embed_server.url + "/metrics").text


def test_embeddings_on_a_chat_model_is_400(client):
    with pytest.raises(openai.BadRequestError, match="makes no embeddings"):
        client.embeddings.create(model="random-llama", input="hi")


def test_tokenize_round_trip(embed_server):
    text = TEXTS[2]
    with_eot = tokenize(embed_server, text)
    plain = tokenize(embed_server, text, add_special_tokens=False)
    assert with_eot["tokens"] == plain["tokens"] + [0] and with_eot["max_model_len"] == MAX_LEN
    back = httpx.post(embed_server.url + "/detokenize", json={"tokens": plain["tokens"]}).json()
    assert back == {"prompt": text}


@pytest.mark.parametrize("mode", ["mean", "cls"])
def test_pooling_mode_from_metadata(embed_model_dir, tmp_path, mode):
    folder = tmp_path / mode
    shutil.copytree(embed_model_dir, folder)
    cfg = json.loads((folder / "1_Pooling/config.json").read_text())
    cfg.update(pooling_mode_lasttoken=False, **{key: True for key, m in POOLING_KEYS.items() if m == mode})
    (folder / "1_Pooling/config.json").write_text(json.dumps(cfg))
    loaded = load_model(str(folder), PluginManager(), runner="auto")
    assert loaded.kind == "embedding" and loaded.model.pooling == mode
    ids = [[5, 6, 7, 8, 9], [11, 12]]
    got = loaded.model.embed(ids)
    for row, one in zip(got.tolist(), ids):
        assert close([x / norm(row) for x in row], reference_embedding(folder, one, mode))


@pytest.mark.parametrize("change,message", [
    ({"pooling_mode_lasttoken": False, "pooling_mode_max_tokens": True}, "pooling_mode_max_tokens"),
    ({"pooling_mode_mean_tokens": True}, "pooling_mode_lasttoken, pooling_mode_mean_tokens"),
])
def test_unsupported_pooling_is_refused_at_load(embed_model_dir, tmp_path, change, message):
    folder = tmp_path / "bad"
    shutil.copytree(embed_model_dir, folder)
    cfg = json.loads((folder / "1_Pooling/config.json").read_text())
    (folder / "1_Pooling/config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(ModelSourceError, match=message):
        load_model(str(folder), PluginManager())
    with pytest.raises(ModelSourceError, match="'qwen3' loader"):  # generate: the LLM loader, which needs a head
        load_model(str(folder), PluginManager(), runner="generate")


def test_runner_pooling_on_a_plain_decoder(random_model_dir, tmp_path_factory):
    """No sentence-transformers metadata: --runner pooling embeds with last-token pooling;
    this model was not trained for shortened vectors, so dimensions is a 400."""
    log = tmp_path_factory.mktemp("logs") / "pooling.log"
    srv = ServerProcess([str(random_model_dir), "--runner", "pooling", "--served-model-name", "pooled"],
                        log_path=log).wait_ready()
    try:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        r = c.embeddings.create(model="pooled", input=TEXTS[:2])
        assert len(r.data) == 2 and all(abs(norm(d.embedding) - 1) < 1e-5 for d in r.data)
        with pytest.raises(openai.BadRequestError, match="Matryoshka"):
            c.embeddings.create(model="pooled", input="hi", dimensions=8)
        assert httpx.get(srv.url + "/health").json()["kind"] == "embedding"
    finally:
        srv.stop()
