"""Speech models beside an embedding model, with no LLM: the server without a generation
engine still serves health, models, metrics and clear 400s for the routes it lacks."""

from __future__ import annotations

import httpx
import pytest
from openai import BadRequestError, OpenAI

from embedding_factory import build_embedding_model
from server_process import ServerProcess
from speech_factory import tone_wav


@pytest.fixture(scope="session")
def speech_embed_server(whisper_dir, tmp_path_factory):
    embed_dir = build_embedding_model(tmp_path_factory.mktemp("models") / "embed-for-speech")
    log = tmp_path_factory.mktemp("logs") / "speech-embed.log"
    srv = ServerProcess([str(whisper_dir), str(embed_dir), "--served-model-name", "whisper",
                         "--served-model-name", "embed"], log_path=log).wait_ready()
    yield srv
    srv.stop()


def test_speech_and_embeddings_without_an_llm(speech_embed_server):
    url = speech_embed_server.url
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    assert [(m.id, m.model_extra["kind"]) for m in client.models.list().data] == [
        ("whisper", "stt"), ("embed", "embedding")]
    assert httpx.get(url + "/health").json()["status"] == "ok"
    assert httpx.get(url + "/metrics").status_code == 200
    r = client.embeddings.create(model="embed", input="hello", encoding_format="float")
    assert len(r.data[0].embedding) == 64
    assert isinstance(client.audio.transcriptions.create(model="whisper", file=("t.wav", tone_wav(1.0)),
                                                         language="en").text, str)
    with pytest.raises(BadRequestError) as exc:
        client.embeddings.create(model="whisper", input="hello")
    assert exc.value.body["code"] == "wrong_model_kind"
    # no LLM here: chat is a 400 (for the embedding model, its kind; for Whisper, its kind)
    for model in ("embed", "whisper"):
        chat = httpx.post(url + "/v1/chat/completions", json={"model": model, "max_tokens": 2,
                                                               "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 400, (model, chat.text)
    with pytest.raises(BadRequestError):
        client.audio.speech.create(model="whisper", voice="x", input="hi")  # no TTS model here
