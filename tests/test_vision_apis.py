"""A vision model through every front door (issue 8 with issue 10's APIs): Anthropic Messages
``image`` blocks (base64 and url sources, also inside ``tool_result``), Responses ``input_image``
parts (also across ``previous_response_id``), the MCP tool loop, ``/tokenize`` and the Python
API all reach the one pipeline and answer what the same request via Chat Completions answers
(greedy); a text-only model keeps answering 400."""

from __future__ import annotations

import base64
import http.server
import json
import sys
import threading
from pathlib import Path

import anthropic
import httpx
import pytest
from openai import OpenAI

from mcp_model import TOOLBOX
from server_process import ServerProcess
from vision_models import build_gemma3_vision, make_image

MODEL = "gemma3-vision"
PROMPT = "What is in this picture?"
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pictures")
    make_image(d / "red.png", color=(200, 30, 40))
    make_image(d / "blue.png", color=(30, 40, 210), size=(40, 60))
    (d / "junk.png").write_bytes(b"not a picture")
    return d


@pytest.fixture(scope="module")
def pictures_url(pictures):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(pictures), **kw)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory) -> Path:
    return build_gemma3_vision(tmp_path_factory.mktemp("models") / "gemma3-vision")


@pytest.fixture(scope="module")
def vserver(gemma_dir, pictures, tmp_path_factory):
    """The tiny Gemma 3 behind the real server, with an MCP server configured (a stdio toolbox)."""
    config = tmp_path_factory.mktemp("mcp") / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"files": {"command": sys.executable, "args": [str(TOOLBOX)]}}}))
    log = tmp_path_factory.mktemp("logs") / "vision-apis.log"
    srv = ServerProcess([str(gemma_dir), "--served-model-name", MODEL, "--max-model-len", "512",
                         "--max-num-seqs", "8", "--block-size", "8", "--sliding-window", "0",
                         "--tool-call-parser", "gemma3", "--allowed-media-domains", "127.0.0.1",
                         "--allowed-local-media-path", str(pictures), "--mcp-config", str(config)],
                        log_path=log).wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(vserver):
    return OpenAI(base_url=vserver.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def claude(vserver):
    return anthropic.Anthropic(base_url=vserver.url, api_key="unused", max_retries=0, timeout=120)


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def data_url(path: Path) -> str:
    return "data:image/png;base64," + b64(path)


def chat(oai, messages, max_tokens=10, **kw):
    r = oai.chat.completions.create(model=MODEL, messages=messages, max_tokens=max_tokens, temperature=0, **kw)
    return r.choices[0].message.content, r.usage.prompt_tokens


def chat_parts(text: str, url: str) -> list[dict]:
    return [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]


# -- Anthropic Messages ------------------------------------------------------------------------------


def prompt_of(usage) -> int:
    """Anthropic counts prefix-cache hits apart from ``input_tokens``."""
    return usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)


def _anthropic_image(kind: str, pictures: Path, pictures_url: str, name: str = "red.png") -> tuple[dict, str]:
    """An Anthropic image block and the URL the same picture has on Chat Completions."""
    if kind == "base64":
        return ({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                              "data": b64(pictures / name)}}, data_url(pictures / name))
    url = f"{pictures_url}/{name}"
    return {"type": "image", "source": {"type": "url", "url": url}}, url


@pytest.mark.parametrize("kind", ["base64", "url"])
def test_anthropic_image_equals_chat_completions(claude, oai, pictures, pictures_url, kind):
    block, url = _anthropic_image(kind, pictures, pictures_url)
    want, prompt_tokens = chat(oai, [{"role": "user", "content": chat_parts(PROMPT, url)}])
    messages = [{"role": "user", "content": [{"type": "text", "text": PROMPT}, block]}]
    r = claude.messages.create(model=MODEL, max_tokens=10, extra_body=GREEDY, messages=messages)
    assert "".join(b.text for b in r.content if b.type == "text") == want
    assert prompt_of(r.usage) == prompt_tokens
    assert claude.messages.count_tokens(model=MODEL, messages=messages).input_tokens == prompt_tokens
    with claude.messages.stream(model=MODEL, max_tokens=10, extra_body=GREEDY, messages=messages) as stream:
        assert stream.get_final_text() == want
    # a different picture gives a different prompt (the image reaches the model, not a placeholder)
    other, _ = _anthropic_image(kind, pictures, pictures_url, "blue.png")
    r2 = claude.messages.create(model=MODEL, max_tokens=10, extra_body=GREEDY,
                                messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT}, other]}])
    want2, _ = chat(oai, [{"role": "user", "content": chat_parts(PROMPT, _anthropic_image(
        kind, pictures, pictures_url, "blue.png")[1])}])
    assert "".join(b.text for b in r2.content if b.type == "text") == want2


def test_anthropic_image_in_tool_result(claude, oai, pictures):
    call = {"type": "tool_use", "id": "toolu_1", "name": "snapshot", "input": {"camera": "front"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
        {"type": "text", "text": "the snapshot:"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(pictures / "red.png")}}]}
    messages = [{"role": "user", "content": "Take a snapshot."},
                {"role": "assistant", "content": [call]},
                {"role": "user", "content": [result, {"type": "text", "text": "Describe it."}]}]
    r = claude.messages.create(model=MODEL, max_tokens=10, extra_body=GREEDY, messages=messages)
    want, prompt_tokens = chat(oai, [
        {"role": "user", "content": "Take a snapshot."},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "snapshot", "arguments": '{"camera": "front"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": chat_parts("the snapshot:", data_url(pictures / "red.png"))},
        {"role": "user", "content": "Describe it."}])
    assert "".join(b.text for b in r.content if b.type == "text") == want
    assert prompt_of(r.usage) == prompt_tokens


@pytest.mark.parametrize("source, words", [
    ({"type": "file", "file_id": "file_1"}, "not supported"),
    ({"type": "base64", "media_type": "image/png"}, "media_type"),
    ({"type": "base64", "media_type": "image/png", "data": "bm90IGFuIGltYWdl"}, "decoded"),
    ({"type": "url", "url": "http://example.invalid/x.png"}, "not allowed"),
])
def test_anthropic_bad_images_are_400_in_anthropic_shape(vserver, source, words):
    r = httpx.post(vserver.url + "/v1/messages", timeout=60, json={
        "model": MODEL, "max_tokens": 4,
        "messages": [{"role": "user", "content": [{"type": "image", "source": source}]}]})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert words in body["error"]["message"], body
    assert httpx.get(vserver.url + "/health").json()["engine"]["state"] == "running"


# -- OpenAI Responses --------------------------------------------------------------------------------


def test_responses_input_image_equals_chat_completions(oai, pictures, pictures_url):
    url = data_url(pictures / "red.png")
    want, prompt_tokens = chat(oai, [{"role": "user", "content": chat_parts(PROMPT, url)}])
    content = [{"type": "input_text", "text": PROMPT}, {"type": "input_image", "image_url": url, "detail": "auto"}]
    r = oai.responses.create(model=MODEL, max_output_tokens=10, temperature=0,
                             input=[{"role": "user", "content": content}])
    assert r.output_text == want and r.usage.input_tokens == prompt_tokens
    with oai.responses.stream(model=MODEL, max_output_tokens=10, temperature=0,
                              input=[{"role": "user", "content": content}]) as stream:
        events = list(stream)  # ends with response.incomplete when max_output_tokens cuts the answer
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == want
    assert events[-1].type in ("response.completed", "response.incomplete")
    # an http(s) URL too
    web = [{"type": "input_text", "text": PROMPT}, {"type": "input_image", "image_url": f"{pictures_url}/red.png"}]
    assert oai.responses.create(model=MODEL, max_output_tokens=10, temperature=0,
                                input=[{"role": "user", "content": web}]).output_text == want


def test_responses_chain_keeps_the_image(oai, pictures):
    url = data_url(pictures / "blue.png")
    first = oai.responses.create(model=MODEL, max_output_tokens=6, temperature=0, input=[
        {"role": "user", "content": [{"type": "input_text", "text": PROMPT}, {"type": "input_image", "image_url": url}]}])
    second = oai.responses.create(model=MODEL, max_output_tokens=8, temperature=0, previous_response_id=first.id,
                                  input="And the colour?")
    want, prompt_tokens = chat(oai, [{"role": "user", "content": chat_parts(PROMPT, url)},
                                     {"role": "assistant", "content": first.output_text},
                                     {"role": "user", "content": "And the colour?"}], max_tokens=8)
    assert second.output_text == want and second.usage.input_tokens == prompt_tokens
    # the repeated image's KV came from the prefix cache
    assert second.usage.input_tokens_details.cached_tokens > 0


def test_responses_image_in_function_call_output(oai, pictures):
    url = data_url(pictures / "red.png")
    r = oai.responses.create(model=MODEL, max_output_tokens=8, temperature=0, input=[
        {"role": "user", "content": "Take a snapshot."},
        {"type": "function_call", "call_id": "call_1", "name": "snapshot", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1",
         "output": [{"type": "input_text", "text": "the snapshot:"}, {"type": "input_image", "image_url": url}]}])
    want, _ = chat(oai, [
        {"role": "user", "content": "Take a snapshot."},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "snapshot", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": chat_parts("the snapshot:", url)}], max_tokens=8)
    assert r.output_text == want


@pytest.mark.parametrize("part, words", [
    ({"type": "input_image", "file_id": "file_1"}, "file_id"),
    ({"type": "input_image"}, "needs an image_url"),
    ({"type": "input_image", "image_url": "data:image/png;base64,bm90IGFuIGltYWdl"}, "decoded"),
])
def test_responses_bad_images_are_400(vserver, part, words):
    r = httpx.post(vserver.url + "/v1/responses", timeout=60, json={
        "model": MODEL, "max_output_tokens": 4, "input": [{"role": "user", "content": [part]}]})
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"]


# -- /tokenize, MCP, Python API ------------------------------------------------------------------------


def test_tokenize_counts_the_image_tokens(vserver, oai, pictures, gemma_dir):
    messages = [{"role": "user", "content": chat_parts(PROMPT, data_url(pictures / "red.png"))}]
    _, prompt_tokens = chat(oai, messages, max_tokens=1)
    r = httpx.post(vserver.url + "/tokenize", json={"model": MODEL, "messages": messages}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == prompt_tokens == len(body["tokens"])
    image_token = json.loads((gemma_dir / "config.json").read_text())["image_token_index"]
    assert body["tokens"].count(image_token) == 4  # the tiny model's tokens per image


def test_mcp_tool_loop_reads_the_image(vserver, oai, pictures):
    """With MCP tools listed the server runs the loop; the (random) model calls no tool here, so the
    answer is the first turn's, which must have seen the picture (the tiny template shows no tools)."""
    messages = [{"role": "user", "content": chat_parts(PROMPT, data_url(pictures / "red.png"))}]
    want, prompt_tokens = chat(oai, messages)
    for stream in (False, True):
        r = httpx.post(vserver.url + "/v1/chat/completions", timeout=120, json={
            "model": MODEL, "messages": messages, "max_tokens": 10, "temperature": 0, "stream": stream,
            "stream_options": {"include_usage": True} if stream else None,
            "tools": [{"type": "mcp", "server_label": "files"}]})
        assert r.status_code == 200, r.text
        if not stream:
            body = r.json()
            assert body["choices"][0]["message"]["content"] == want
            assert body["usage"]["prompt_tokens"] == prompt_tokens
        else:
            chunks = [json.loads(line[6:]) for line in r.text.splitlines()
                      if line.startswith("data: ") and line != "data: [DONE]"]
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
            assert text == want
            assert chunks[-1]["usage"]["prompt_tokens"] == prompt_tokens


def test_responses_mcp_loop_reads_the_image(oai, pictures):
    """Responses with MCP tools runs its own tool loop; the first turn must see the picture."""
    url = data_url(pictures / "red.png")
    want, prompt_tokens = chat(oai, [{"role": "user", "content": chat_parts(PROMPT, url)}])
    r = oai.responses.create(model=MODEL, max_output_tokens=10, temperature=0,
                             tools=[{"type": "mcp", "server_label": "files", "require_approval": "never"}],
                             input=[{"role": "user", "content": [{"type": "input_text", "text": PROMPT},
                                                                 {"type": "input_image", "image_url": url}]}])
    assert r.output_text == want and r.usage.input_tokens == prompt_tokens


def test_mcp_tool_loop_bad_image_is_400(vserver):
    r = httpx.post(vserver.url + "/v1/chat/completions", timeout=60, json={
        "model": MODEL, "max_tokens": 4, "tools": [{"type": "mcp", "server_label": "files"}],
        "messages": [{"role": "user", "content": chat_parts("x", "data:image/png;base64,bm90IGFuIGltYWdl")}]})
    assert r.status_code == 400 and "decoded" in r.json()["error"]["message"]


def test_python_api_chat_with_images_equals_the_server(gemma_dir, oai, pictures):
    from vllm_mlx import LLM, SamplingParams

    red, blue = pictures / "red.png", pictures / "blue.png"
    cases = [(PROMPT, red, data_url(red)), (PROMPT, red, red.as_uri()), ("Which colour?", blue, data_url(blue)),
             ("No picture here.", None, None)]
    convos = [[{"role": "user", "content": chat_parts(text, url) if url else text}] for text, _, url in cases]
    with LLM(str(gemma_dir), allowed_local_media_path=str(pictures)) as llm:
        outs = llm.chat(convos, SamplingParams(max_tokens=10, temperature=0))
        single = llm.chat(convos[2], SamplingParams(max_tokens=10, temperature=0))[0]
        with pytest.raises(ValueError, match="decoded"):
            llm.chat([{"role": "user", "content": chat_parts("x", "data:image/png;base64,bm90IGFuIGltYWdl")}])
        with pytest.raises(ValueError, match="outside the allowed"):
            llm.chat([{"role": "user", "content": chat_parts("x", Path("/etc/hostname").as_uri())}])
    for (text, path, _), out in zip(cases, outs):
        want, prompt_tokens = chat(oai, [{"role": "user", "content": chat_parts(text, data_url(path)) if path else text}])
        assert out.outputs[0].text == want
        assert len(out.prompt_token_ids) == prompt_tokens
    assert single.outputs[0].text == outs[2].outputs[0].text


# -- Qwen-VL (multimodal rotary positions; Qwen3-VL deepstack) -------------------------------------------


@pytest.mark.parametrize("server_fixture", ["qwen_server", "qwen3_server"])
def test_qwen_vl_image_on_messages_and_responses(request, server_fixture, pictures):
    """The shared Qwen2.5-VL and Qwen3-VL servers (tests/vision_fixtures.py)."""
    server = request.getfixturevalue(server_fixture)
    oai = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    claude = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
    url = data_url(pictures / "blue.png")
    want, prompt_tokens = chat(oai, [{"role": "user", "content": chat_parts(PROMPT, url)}])
    r = claude.messages.create(model=MODEL, max_tokens=10, extra_body=GREEDY, messages=[{"role": "user", "content": [
        {"type": "text", "text": PROMPT},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(pictures / "blue.png")}}]}])
    assert "".join(b.text for b in r.content if b.type == "text") == want and prompt_of(r.usage) == prompt_tokens
    r = oai.responses.create(model=MODEL, max_output_tokens=10, temperature=0, input=[{"role": "user", "content": [
        {"type": "input_text", "text": PROMPT}, {"type": "input_image", "image_url": url}]}])
    assert r.output_text == want and r.usage.input_tokens == prompt_tokens


# -- text-only models --------------------------------------------------------------------------------


def test_text_only_model_refuses_images_on_every_api(server, pictures):
    from conftest import API_KEY

    headers = {"Authorization": f"Bearer {API_KEY}"}
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(pictures / "red.png")}}
    cases = [
        ("/v1/messages", {"max_tokens": 4, "messages": [{"role": "user", "content": [image]}]}),
        ("/v1/messages", {"max_tokens": 4, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [image]}]}]}),
        ("/v1/messages/count_tokens", {"messages": [{"role": "user", "content": [image]}]}),
        ("/v1/responses", {"input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": data_url(pictures / "red.png")}]}]}),
        ("/tokenize", {"messages": [{"role": "user", "content": chat_parts("x", data_url(pictures / "red.png"))}]}),
    ]
    for path, body in cases:
        r = httpx.post(server.url + path, headers=headers, json={"model": "random-llama", **body}, timeout=30)
        assert r.status_code == 400, (path, r.text)
        assert "reads text only" in r.json()["error"]["message"], (path, r.text)


def test_python_api_text_only_model_refuses_images(random_model_dir, pictures):
    from vllm_mlx import LLM

    with LLM(str(random_model_dir)) as llm:
        with pytest.raises(ValueError, match="reads text only"):
            llm.chat([{"role": "user", "content": chat_parts("x", data_url(pictures / "red.png"))}])
