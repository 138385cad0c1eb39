"""Vision-language models (issue 8): tiny random Gemma 3 (SigLIP tower) and Qwen2.5-VL models
behind the real server. Image requests batch with text requests and give what mlx-vlm gives;
media come from data:, http(s) and file:// URLs under the server's rules; bad media
are 400s and the engine keeps serving."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from server_process import ServerProcess
from vision_models import build_gemma3_vision, build_qwen2_5_vl, make_image

COLORS = {"red": (200, 30, 40), "green": (20, 180, 60), "blue": (30, 40, 210)}
MAX_BYTES = 200_000


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("media")
    for name, color in COLORS.items():
        make_image(d / f"{name}.png", color=color)
    make_image(d / "green.jpg", color=COLORS["green"], fmt="JPEG")
    (d / "not-an-image.png").write_bytes(b"this is text, not a PNG")
    (d / "notes.txt").write_text("plain text")
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(d / "big.png")
    assert (d / "big.png").stat().st_size > MAX_BYTES
    return d


@pytest.fixture(scope="session")
def media_url(media_dir):
    """A loopback HTTP server for the media folder; /slow/NAME answers after 3 s."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(media_dir), **kw)

        def do_GET(self):
            if self.path.startswith("/slow/"):
                time.sleep(3)
                self.path = self.path[5:]
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/red.png")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="session")
def gemma3_vision_dir(tmp_path_factory) -> Path:
    return build_gemma3_vision(tmp_path_factory.mktemp("models") / "gemma3-vision")


@pytest.fixture(scope="session")
def vision_server(gemma3_vision_dir, media_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "vision.log"
    srv = ServerProcess([str(gemma3_vision_dir), "--served-model-name", "gemma3-vision", "--max-model-len", "512",
                         "--max-num-seqs", "16", "--sliding-window", "0", "--block-size", "8",
                         "--limit-mm-per-prompt", '{"image": 2}', "--allowed-media-domains", "127.0.0.1",
                         "--allowed-local-media-path", str(media_dir), "--media-fetch-timeout", "1",
                         "--media-max-bytes", str(MAX_BYTES)], log_path=log).wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def qwen_vl_dir(tmp_path_factory) -> Path:
    return build_qwen2_5_vl(tmp_path_factory.mktemp("models") / "qwen2.5-vl")


@pytest.fixture(scope="session")
def qwen_server(qwen_vl_dir, media_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "qwen-vl.log"
    srv = ServerProcess([str(qwen_vl_dir), "--served-model-name", "gemma3-vision", "--max-model-len", "512",
                         "--max-num-seqs", "16", "--allowed-local-media-path", str(media_dir)],
                        log_path=log).wait_ready()
    yield srv
    srv.stop()


FAMILIES = {"gemma3": ("vision_server", "gemma3_vision_dir"), "qwen2_5_vl": ("qwen_server", "qwen_vl_dir")}


@pytest.fixture(scope="session", params=list(FAMILIES))
def family(request):
    """(name, server, model folder, client) of each built-in vision family."""
    from openai import OpenAI

    server_fixture, dir_fixture = FAMILIES[request.param]
    server = request.getfixturevalue(server_fixture)
    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    return request.param, server, request.getfixturevalue(dir_fixture), client


@pytest.fixture(scope="session")
def vclient(vision_server):
    from openai import OpenAI

    return OpenAI(base_url=vision_server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def data_url(path: Path) -> str:
    kind = "jpeg" if path.suffix == ".jpg" else "png"
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode()


def image_message(text: str, *urls: str, image_first: bool = False) -> list[dict]:
    images = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    parts = [{"type": "text", "text": text}]
    return [{"role": "user", "content": images + parts if image_first else parts + images}]


def ask(client, messages, max_tokens=10, **kw):
    return client.chat.completions.create(model="gemma3-vision", messages=messages, max_tokens=max_tokens,
                                          temperature=0, **kw)


def post(server, body) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json={"model": "gemma3-vision", "max_tokens": 4, **body},
                      timeout=60)


def assert_400(server, messages, fragment: str, **extra):
    r = post(server, {"messages": messages, **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert fragment in err["message"], err["message"]


# -- loading --------------------------------------------------------------------------


def test_vision_model_is_kind_mllm_everywhere(vision_server):
    health = httpx.get(vision_server.url + "/health").json()
    assert health["model_type"] == "mllm" and health["kind"] == "mllm"
    cards = httpx.get(vision_server.url + "/v1/models").json()["data"]
    assert cards[0]["model_type"] == "mllm"
    out = subprocess.run([sys.executable, "-m", "vllm_mlx.cli.main", "plugins"], capture_output=True, text=True,
                         check=True).stdout
    assert "gemma3-vision (mllm)" in out and "qwen-vl (mllm)" in out


# -- generation -----------------------------------------------------------------------


def _cases(media_dir: Path, media_url: str) -> list[tuple[str, list[dict], list[Path]]]:
    """(name, messages, images in prompt order): image and text requests of different lengths."""
    red, green, blue = (media_dir / f"{c}.png" for c in ("red", "green", "blue"))
    return [
        ("red-data", image_message("What is in this picture?", data_url(red)), [red]),
        ("blue-http", image_message("Describe the colours you see here, briefly.", f"{media_url}/blue.png",
                                    image_first=True), [blue]),
        ("green-file", image_message("Name the shape.", f"file://{green}"), [green]),
        ("two-images", image_message("Compare these two pictures.", data_url(red), data_url(blue)), [red, blue]),
        ("text-short", [{"role": "user", "content": "Hello there!"}], []),
        ("text-long", [{"role": "user", "content": "Continuous batching lets many requests share one forward "
                                                   "pass; tell me more about it, please."}], []),
        ("red-again-other-text", image_message("Pack my box with five dozen liquor jugs?", data_url(red)), [red]),
        ("text-mid", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Numbers 1 2 3"}], []),
    ]


MAX_TOKENS = 12


@pytest.fixture(scope="session")
def alone(family, media_dir, media_url):
    """Each case's greedy reply (with logprobs) with nothing else running, per family."""
    name, _, _, client = family
    return {case: ask(client, msgs, max_tokens=MAX_TOKENS, logprobs=True)
            for case, msgs, _ in _cases(media_dir, media_url)}


@pytest.fixture(scope="session")
def vision_alone(vision_server, vclient, media_dir, media_url):
    return {case: ask(vclient, msgs, max_tokens=MAX_TOKENS) for case, msgs, _ in _cases(media_dir, media_url)}


def _reference(model, processor, prompt: str, images: list[Path]) -> tuple[list[int], list[float], int]:
    """mlx-vlm's greedy tokens, their logprobs and the prompt length."""
    from mlx_vlm import stream_generate

    tokens, logprobs, prompt_tokens = [], [], 0
    for r in stream_generate(model, processor, prompt, image=[str(p) for p in images] or None,
                             max_tokens=MAX_TOKENS, temperature=0.0):
        if r.token is None or len(tokens) == MAX_TOKENS:  # its last item repeats the last token
            continue
        tokens.append(int(r.token))
        logprobs.append(float(r.logprobs[r.token].item()))
        prompt_tokens = r.prompt_tokens
    return tokens, logprobs, prompt_tokens


def test_requests_match_mlx_vlm_generate(family, alone, media_dir, media_url):
    """Greedy tokens and their logprobs equal mlx-vlm's (logprobs catch wrong positions,
    e.g. Qwen's rotary delta after an image, that greedy picks of a random model may not)."""
    from mlx_vlm import load

    name, server, model_dir, _ = family
    # "red-again-other-text" was answered from "red-data"'s cached encoder output
    assert httpx.get(server.url + "/health").json()["vision"]["encoder_cache_hits"] >= 1
    model, processor = load(str(model_dir))
    tokenizer = processor.tokenizer
    eos = {tokenizer.convert_tokens_to_ids(t) for t in ("<eos>", "<end_of_turn>", "<|im_end|>")}
    for case, msgs, images in _cases(media_dir, media_url):
        template_msgs = [{**m, "content": m["content"] if isinstance(m["content"], str) else
                          [{"type": "image"} if p["type"] == "image_url" else p for p in m["content"]]} for m in msgs]
        prompt = tokenizer.apply_chat_template(template_msgs, tokenize=False, add_generation_prompt=True)
        ref_tokens, ref_logprobs, ref_prompt = _reference(model, processor, prompt, images)
        ours = alone[case]
        lp = ours.choices[0].logprobs.content
        ours_text = ours.choices[0].message.content
        kept = [t for t in ref_tokens if t not in eos]
        # an incomplete UTF-8 sequence at the very end is held back by our detokenizer
        assert ours_text.rstrip("\ufffd") == tokenizer.decode(kept).rstrip("\ufffd"), (name, case)
        assert ours.usage.completion_tokens == len(ref_tokens), (name, case)
        # usage counts the image tokens
        assert ours.usage.prompt_tokens == ref_prompt, (name, case)
        for got, want in zip(lp, ref_logprobs):
            assert abs(got.logprob - want) < 2e-3, (name, case, got.logprob, want)


def test_concurrent_mixed_requests_equal_each_alone(family, alone, media_dir, media_url):
    from openai import AsyncOpenAI

    name, server, _, _ = family
    cases = _cases(media_dir, media_url)

    async def run():
        client = AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        calls = [client.chat.completions.create(model="gemma3-vision", messages=msgs, max_tokens=MAX_TOKENS,
                                                temperature=0, logprobs=True) for _, msgs, _ in cases]
        return await asyncio.gather(*calls)

    together = asyncio.run(run())
    for (case, _, _), r in zip(cases, together):
        want = alone[case]
        assert r.choices[0].message.content == want.choices[0].message.content, (name, case)
        assert r.usage.completion_tokens == want.usage.completion_tokens, (name, case)
        for got, exp in zip(r.choices[0].logprobs.content, want.choices[0].logprobs.content):
            assert abs(got.logprob - exp.logprob) < 2e-3, (name, case)
    health = httpx.get(server.url + "/health").json()
    assert health["engine"]["errors"] == 0 and health["model_type"] == "mllm"


def test_streaming_image_request(vclient, vision_alone, media_dir):
    stream = vclient.chat.completions.create(model="gemma3-vision", stream=True, max_tokens=12, temperature=0,
                                             messages=image_message("What is in this picture?",
                                                                    data_url(media_dir / "red.png")),
                                             stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text == vision_alone["red-data"].choices[0].message.content
    assert usage.prompt_tokens == vision_alone["red-data"].usage.prompt_tokens


# -- prefix cache ---------------------------------------------------------------------


def test_same_image_reuses_kv_and_other_image_never_does(family, media_dir):
    vclient = family[3]
    question = "Is this the same picture as before? Answer in a few words, please."
    first = ask(vclient, image_message(question, data_url(media_dir / "green.png")), logprobs=True)
    again = ask(vclient, image_message(question, data_url(media_dir / "green.png")), logprobs=True)
    assert again.usage.prompt_tokens_details.cached_tokens > 0
    assert again.choices[0].message.content == first.choices[0].message.content
    for a, b in zip(again.choices[0].logprobs.content, first.choices[0].logprobs.content):
        assert abs(a.logprob - b.logprob) < 2e-3
    # the same text with a picture not sent before: not one block of the first may serve it
    purple = make_image(media_dir / "purple.png", color=(120, 20, 160))
    other = ask(vclient, image_message(question, "data:image/png;base64," + base64.b64encode(purple).decode()))
    assert other.usage.prompt_tokens_details.cached_tokens == 0
    # the pixels count, not the file: the same picture as JPEG (lossy) is another image,
    # and the same pixels in another file format are the same image
    jpeg = make_image(color=(120, 20, 160), fmt="JPEG")
    r = ask(vclient, image_message(question, "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()))
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    bmp = make_image(color=(120, 20, 160), fmt="BMP")
    r = ask(vclient, image_message(question, "data:image/bmp;base64," + base64.b64encode(bmp).decode()))
    assert r.usage.prompt_tokens_details.cached_tokens > 0
    assert r.choices[0].message.content == other.choices[0].message.content


def test_repeated_image_is_not_re_encoded(family, media_dir):
    """The same picture under different text (so the prefix cache cannot serve it) is
    encoded once; its reply equals the reply with the picture freshly encoded."""
    name, server, _, client = family
    yellow = make_image(media_dir / f"yellow-{name}.png", color=(230, 220, 20))
    url = "data:image/png;base64," + base64.b64encode(yellow).decode()

    def vision():
        return httpx.get(server.url + "/health").json()["vision"]

    before = vision()
    first = ask(client, image_message("One question about it?", url))
    after_first = vision()
    assert after_first["encoder_cache_misses"] == before["encoder_cache_misses"] + 1
    second = ask(client, image_message("Another question about this one?", url))
    after_second = vision()
    assert after_second["encoder_cache_hits"] == after_first["encoder_cache_hits"] + 1
    assert after_second["encoder_cache_misses"] == after_first["encoder_cache_misses"]
    assert second.usage.prompt_tokens_details.cached_tokens < second.usage.prompt_tokens - 8
    # That cached features give what fresh ones give is checked against mlx-vlm in
    # test_requests_match_mlx_vlm_generate: its case "red-again-other-text" reuses "red-data"'s features.


# -- inputs ---------------------------------------------------------------------------


def test_image_url_forms(vclient, vision_alone, media_dir, media_url):
    expected = vision_alone["red-data"].choices[0].message.content
    text = "What is in this picture?"
    via_http = ask(vclient, image_message(text, f"{media_url}/red.png"), max_tokens=12)
    via_file = ask(vclient, image_message(text, f"file://{media_dir / 'red.png'}"), max_tokens=12)
    bare = ask(vclient, [{"role": "user", "content": [{"type": "text", "text": text},
                                                      {"type": "image_url", "image_url": f"{media_url}/red.png"}]}],
               max_tokens=12)
    assert via_http.choices[0].message.content == via_file.choices[0].message.content == expected
    assert bare.choices[0].message.content == expected
    # an image in an earlier turn, then a text-only follow-up
    convo = image_message(text, data_url(media_dir / "blue.png")) + [
        {"role": "assistant", "content": "Something blue."}, {"role": "user", "content": "And the shape?"}]
    assert ask(vclient, convo).usage.prompt_tokens > 0
    # Gemma 3's pan-and-scan, per request
    r = ask(vclient, image_message(text, data_url(media_dir / "red.png")),
            extra_body={"mm_processor_kwargs": {"do_pan_and_scan": False}})
    assert r.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("case", [
    "undecodable", "not-image-type", "http-404", "timeout", "too-large", "domain", "redirect", "outside-dir",
    "dotdot", "too-many", "video", "bad-scheme", "bad-kwargs", "no-url", "bad-base64-type"])
def test_bad_media_is_a_400(vision_server, media_dir, media_url, case):
    q = "What is this?"
    messages, extra, fragment = None, {}, ""
    if case == "undecodable":
        messages, fragment = image_message(q, data_url(media_dir / "not-an-image.png")), "could not be decoded"
    elif case == "not-image-type":
        messages, fragment = image_message(q, f"{media_url}/notes.txt"), "not an image"
    elif case == "http-404":
        messages, fragment = image_message(q, f"{media_url}/missing.png"), "HTTP 404"
    elif case == "timeout":
        messages, fragment = image_message(q, f"{media_url}/slow/red.png"), "timed out"
    elif case == "too-large":
        messages, fragment = image_message(q, f"{media_url}/big.png"), "larger than"
    elif case == "domain":
        url = f"{media_url}/red.png".replace("127.0.0.1", "localhost")
        messages, fragment = image_message(q, url), "not allowed"
    elif case == "redirect":
        messages, fragment = image_message(q, f"{media_url}/redirect"), "HTTP 302"
    elif case == "outside-dir":
        messages, fragment = image_message(q, f"file://{media_dir.parent}/x.png"), "outside the allowed"
    elif case == "dotdot":
        messages, fragment = image_message(q, f"file://{media_dir}/../{media_dir.name}/../x.png"), "outside the allowed"
    elif case == "too-many":
        red = data_url(media_dir / "red.png")
        messages, fragment = image_message(q, red, red, red), "limit is 2"
    elif case == "video":
        messages = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": f"{media_url}/a.mp4"}}]}]
        fragment = "video_url"
    elif case == "bad-scheme":
        messages, fragment = image_message(q, "ftp://127.0.0.1/red.png"), "unsupported image URL scheme"
    elif case == "bad-kwargs":
        messages = image_message(q, data_url(media_dir / "red.png"))
        extra, fragment = {"mm_processor_kwargs": {"return_tensors": "pt"}}, "unsupported return_tensors"
    elif case == "no-url":
        messages, fragment = [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "needs a url"
    elif case == "bad-base64-type":
        messages, fragment = image_message(q, "data:text/plain;base64,aGVsbG8="), "not an image"
    assert_400(vision_server, messages, fragment, **extra)


def test_engine_keeps_serving_after_bad_media(vclient, vision_server, vision_alone, media_dir):
    assert_400(vision_server, image_message("x", data_url(media_dir / "not-an-image.png")), "decoded")
    r = ask(vclient, image_message("What is in this picture?", data_url(media_dir / "red.png")), max_tokens=12)
    assert r.choices[0].message.content == vision_alone["red-data"].choices[0].message.content
    assert httpx.get(vision_server.url + "/health").json()["engine"]["state"] == "running"


def test_image_to_text_only_model_is_a_400(server, media_dir):
    from conftest import API_KEY

    r = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                   json={"model": "random-llama", "max_tokens": 4,
                         "messages": image_message("What is this?", data_url(media_dir / "red.png"))}, timeout=30)
    assert r.status_code == 400
    assert "reads text only" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                   json={"model": "random-llama", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}],
                         "mm_processor_kwargs": {"do_pan_and_scan": True}}, timeout=30)
    assert r.status_code == 400


def test_bad_limit_flag_is_refused(gemma3_vision_dir):
    out = subprocess.run([sys.executable, "-m", "vllm_mlx.cli.main", "serve", str(gemma3_vision_dir),
                          "--limit-mm-per-prompt", json.dumps({"image": -1})], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "--limit-mm-per-prompt" in out.stderr
