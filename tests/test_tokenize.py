"""vLLM's /tokenize and /detokenize on the real server (random LLM; the embedding
model's round trip is in test_embeddings.py)."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from test_fuzz import SETTINGS, check, content, json_values, roles

MSG = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the quick brown fox"}]


def post(server, path, body):
    return httpx.post(server.url + path, json=body, timeout=30)


def test_prompt_round_trip(server):
    text = "Grüße aus München! 🙂 def add(a, b): return a + b"
    r = post(server, "/tokenize", {"model": "random-llama", "prompt": text, "return_token_strs": True}).json()
    assert r["count"] == len(r["tokens"]) == len(r["token_strs"]) and r["max_model_len"] == 512
    assert post(server, "/detokenize", {"model": "random-llama", "tokens": r["tokens"]}).json() == {"prompt": text}
    plain = post(server, "/tokenize", {"prompt": text}).json()
    assert "token_strs" not in plain or plain["token_strs"] is None


def test_messages_count_equals_chat_prompt_tokens(server, client):
    r = post(server, "/tokenize", {"model": "random-llama", "messages": MSG}).json()
    chat = client.chat.completions.create(model="random-llama", messages=MSG, max_tokens=1)
    assert r["count"] == chat.usage.prompt_tokens
    bare = post(server, "/tokenize", {"messages": MSG, "add_generation_prompt": False}).json()
    assert bare["count"] < r["count"] and r["tokens"][:bare["count"]] == bare["tokens"]


@pytest.mark.parametrize("path,body,status", [
    ("/tokenize", {"prompt": "a", "messages": MSG}, 400),
    ("/tokenize", {}, 400),
    ("/tokenize", {"messages": MSG, "continue_final_message": True}, 400),
    ("/tokenize", {"messages": MSG, "add_special_tokens": True}, 400),
    ("/tokenize", {"messages": [{"role": "wizard", "content": "x"}]}, 400),
    ("/tokenize", {"prompt": "a", "model": "other"}, 404),
    ("/tokenize", {"prompt": 5}, 400),
    ("/detokenize", {"tokens": [10**7]}, 400),
    ("/detokenize", {"tokens": [-1]}, 400),
    ("/detokenize", {"tokens": "abc"}, 400),
])
def test_bad_requests(server, path, body, status):
    r = post(server, path, body)
    assert r.status_code == status and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_empty_detokenize(server):
    assert post(server, "/detokenize", {"tokens": []}).json() == {"prompt": ""}


tokenize_bodies = st.fixed_dictionaries({}, optional={
    "prompt": st.one_of(st.text(max_size=200), json_values),
    "messages": st.lists(st.fixed_dictionaries({"role": roles, "content": content}), max_size=3) | json_values,
    "add_special_tokens": st.one_of(st.booleans(), json_values),
    "add_generation_prompt": st.booleans(),
    "continue_final_message": st.booleans(),
    "return_token_strs": st.one_of(st.booleans(), json_values),
    "chat_template_kwargs": json_values,
    "tools": json_values,
    "model": st.sampled_from(["default", "random-llama", "nope"]),
})


@SETTINGS
@given(body=tokenize_bodies)
def test_tokenize_never_5xx(server, body):
    check(server, "/tokenize", body)


@SETTINGS
@given(body=st.fixed_dictionaries({"tokens": st.one_of(st.lists(st.integers(-5, 10**6), max_size=20), json_values)}))
def test_detokenize_never_5xx(server, body):
    check(server, "/detokenize", body)
