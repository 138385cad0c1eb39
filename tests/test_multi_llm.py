"""Several LLMs in one server (beside Whisper): each has its own engine, answers through its
own served name exactly as it does alone, and they share the device by turns while busy at
once (two chat streams and a transcription in flight together)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from mlx_lm import load
from mlx_lm.generate import stream_generate
from openai import AsyncOpenAI, BadRequestError, NotFoundError, OpenAI

from model_factory import build_random_model
from server_process import ServerProcess
from speech_factory import tone_wav

PROMPT = "the lazy dog"


@pytest.fixture(scope="session")
def second_model_dir(tmp_path_factory):
    """Another tiny LLM: other weights and shape, so the two cannot answer alike by chance."""
    return build_random_model(tmp_path_factory.mktemp("models") / "random-llama-b", hidden=96, layers=1, seed=7)


@pytest.fixture(scope="session")
def two_llm_server(random_model_dir, second_model_dir, whisper_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "two-llms.log"
    srv = ServerProcess([str(random_model_dir), str(whisper_dir), str(second_model_dir),
                         "--served-model-name", "llm-a", "--served-model-name", "whisper",
                         "--served-model-name", "llm-b", "--max-model-len", "256",
                         "--model-alias", "gpt-b=llm-b"], log_path=log).wait_ready()
    yield srv
    srv.stop()


def alone(path, max_tokens: int = 12) -> str:
    """What the model makes by itself (mlx-lm, greedy)."""
    model, tok = load(str(path))
    ids = []
    for step in stream_generate(model, tok, tok.encode(PROMPT), max_tokens=max_tokens):
        if step.token in tok.eos_token_ids:
            break
        ids.append(step.token)
    return tok.decode(tok.encode(PROMPT) + ids)[len(PROMPT):]


def test_each_llm_answers_through_its_name(two_llm_server, random_model_dir, second_model_dir):
    url = two_llm_server.url
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    expected = {"llm-a": alone(random_model_dir), "llm-b": alone(second_model_dir)}
    assert expected["llm-a"] != expected["llm-b"]
    for name, text in expected.items():
        r = client.completions.create(model=name, prompt=PROMPT, max_tokens=12, temperature=0)
        assert r.choices[0].text == text and r.model == name
    # the alias names the second model; no name: the first LLM
    assert client.completions.create(model="gpt-b", prompt=PROMPT, max_tokens=12,
                                     temperature=0).choices[0].text == expected["llm-b"]
    assert httpx.post(url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 12, "temperature": 0}
                      ).json()["choices"][0]["text"] == expected["llm-a"]
    models = client.models.list().data
    assert [(m.id, m.model_extra["kind"]) for m in models] == [  # a plain alias is listed after its model
        ("llm-a", "llm"), ("whisper", "stt"), ("llm-b", "llm"), ("gpt-b", "llm")]
    assert all(m.model_extra["max_model_len"] == 256 for m in models if m.id.startswith("llm"))
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and [m["name"] for m in health["models"]] == ["llm-a", "whisper", "llm-b"]
    assert all(m["state"] == "running" for m in health["models"]) and health["device_turns"]["turns"] > 0
    metrics = httpx.get(url + "/metrics").text
    assert 'vllm:generation_tokens_total{model_name="llm-a"}' in metrics
    assert 'vllm:generation_tokens_total{model_name="llm-b"}' in metrics
    assert metrics.count("# TYPE vllm:generation_tokens_total counter") == 1
    # a model of the wrong kind, an unknown one
    with pytest.raises(BadRequestError) as exc:
        client.chat.completions.create(model="whisper", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["code"] == "wrong_model_kind"
    with pytest.raises(NotFoundError):
        client.completions.create(model="llm-c", prompt=PROMPT, max_tokens=2)
    tok = httpx.post(url + "/tokenize", json={"model": "llm-b", "prompt": PROMPT}).json()
    assert tok["count"] > 0


def test_busy_together_each_answers_as_alone(two_llm_server, random_model_dir, second_model_dir):
    """Both LLMs streaming and a transcription running at once: the engines take turns on the
    device, and batching beside other models changes no answer."""
    expected = {"llm-a": alone(random_model_dir, 24), "llm-b": alone(second_model_dir, 24)}
    client = AsyncOpenAI(base_url=two_llm_server.url + "/v1", api_key="unused", max_retries=0, timeout=300)

    async def complete(name):
        stream = await client.completions.create(model=name, prompt=PROMPT, max_tokens=24, temperature=0,
                                                 stream=True)
        return name, "".join([c.choices[0].text async for c in stream if c.choices])

    async def transcribe():
        r = await client.audio.transcriptions.create(model="whisper", file=("t.wav", tone_wav(35.0)),
                                                     language="en", response_format="verbose_json")
        return "whisper", r.duration

    async def run():
        return await asyncio.gather(transcribe(), *[complete(n) for n in ("llm-a", "llm-b", "llm-a", "llm-b")])

    results = asyncio.run(run())
    assert results[0] == ("whisper", 35.0)
    for name, text in results[1:]:
        assert text == expected[name], name
    turns = httpx.get(two_llm_server.url + "/health").json()["device_turns"]
    assert turns["handovers"] > 0  # the engines did alternate


def test_an_engine_process_llm_takes_turns_with_whisper(random_model_dir, whisper_dir, tmp_path):
    """--engine-process (the default on a GPU): the LLM's engine in a child process still takes
    turns with the server's Whisper thread, and still answers as alone."""
    srv = ServerProcess([str(random_model_dir), str(whisper_dir), "--served-model-name", "llm",
                         "--served-model-name", "whisper", "--engine-process", "--max-model-len", "256"],
                        log_path=tmp_path / "engine-process.log").wait_ready()
    try:
        expected = alone(random_model_dir, 24)
        client = AsyncOpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=300)

        async def complete():
            stream = await client.completions.create(model="llm", prompt=PROMPT, max_tokens=24, temperature=0,
                                                     stream=True)
            return "".join([c.choices[0].text async for c in stream if c.choices])

        async def run():
            transcription = client.audio.transcriptions.create(model="whisper", file=("t.wav", tone_wav(35.0)),
                                                               language="en")
            return await asyncio.gather(transcription, complete(), complete())

        transcription, *texts = asyncio.run(run())
        assert isinstance(transcription.text, str) and texts == [expected, expected]
        turns = httpx.get(srv.url + "/health").json()["device_turns"]
        assert turns["handovers"] > 0 and {"llm", "whisper"} <= set(turns["longest_turn_ms"])
    finally:
        srv.stop()
