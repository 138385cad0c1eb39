"""Video in requests (issue 8): ``video_url`` parts from data:, http(s) and file:// URLs under
the server's rules, frames sampled in-process with PyAV at ``fps`` / ``max_frames`` (request
``mm_processor_kwargs``), video content in the prefix-cache salt and the encoder cache, and bad
video as 400s with the engine serving on. Whether a video request's output equals mlx-vlm's and
its output alone under load is in test_vision.py (the twelve mixed requests)."""

from __future__ import annotations

import base64

import httpx
import pytest

from test_vision import ask, assert_400, clip_data_url, data_url, video_part
from vision_models import make_video
from vllm_mlx.server.media import parse_limits


def video_message(text: str, *urls: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, *(video_part(u) for u in urls)]}]


@pytest.fixture(scope="session")
def qclient(qwen3_server):
    from openai import OpenAI

    return OpenAI(base_url=qwen3_server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _vision(server) -> dict:
    return httpx.get(server.url + "/health").json()["vision"]


def test_same_video_reuses_kv_and_other_video_never_does(qclient, qwen3_server, media_dir):
    question = "What moves in this clip? Answer in a few words, please."
    first = ask(qclient, video_message(question, clip_data_url(media_dir / "clip.mp4")), logprobs=True)
    before = _vision(qwen3_server)
    # the same clip from a file: the same pixels, so the same blocks (and no second encoding)
    again = ask(qclient, video_message(question, f"file://{media_dir / 'clip.mp4'}"), logprobs=True)
    assert again.usage.prompt_tokens_details.cached_tokens > 0
    assert again.choices[0].message.content == first.choices[0].message.content
    for a, b in zip(again.choices[0].logprobs.content, first.choices[0].logprobs.content):
        assert abs(a.logprob - b.logprob) < 2e-3
    assert _vision(qwen3_server)["encoder_cache_misses"] == before["encoder_cache_misses"]
    # the same text and length with a clip not sent before: not one block of the first may serve it
    make_video(media_dir / "clip-purple.mp4", colors=((120, 20, 160), (20, 180, 60)))
    other = ask(qclient, video_message(question, clip_data_url(media_dir / "clip-purple.mp4")))
    assert other.usage.prompt_tokens == first.usage.prompt_tokens
    assert other.usage.prompt_tokens_details.cached_tokens == 0
    # other frames of the same clip (another sampling rate) are another video too
    denser = ask(qclient, video_message(question, clip_data_url(media_dir / "clip.mp4")),
                 extra_body={"mm_processor_kwargs": {"fps": 4}})
    assert denser.usage.prompt_tokens > first.usage.prompt_tokens
    assert denser.usage.prompt_tokens_details.cached_tokens < 8 * 4  # at most the text before the video


def test_repeated_video_is_not_re_encoded(qclient, qwen3_server, media_dir):
    url = f"file://{media_dir / 'clip2.mp4'}"
    ask(qclient, video_message("One question about it?", url))
    before = _vision(qwen3_server)
    r = ask(qclient, video_message("A different question about this clip, then?", url))
    after = _vision(qwen3_server)
    assert after["encoder_cache_hits"] == before["encoder_cache_hits"] + 1
    assert after["encoder_cache_misses"] == before["encoder_cache_misses"]
    assert r.usage.prompt_tokens_details.cached_tokens < r.usage.prompt_tokens - 8


def test_sampling_kwargs_set_the_frames(qclient, media_dir):
    """fps and max_frames pick how many frames the model sees: each pair of frames is one
    group of 4 tokens under its own timestamp, so the prompt grows with the frames."""
    url = f"file://{media_dir / 'clip.mp4'}"

    def prompt_tokens(**kw):
        return ask(qclient, video_message("Frames?", url), max_tokens=1,
                   extra_body={"mm_processor_kwargs": kw} if kw else None).usage.prompt_tokens

    default = prompt_tokens()  # 2 fps over 2 s: 4 frames, 2 groups
    assert prompt_tokens(fps=2, max_frames=32) == default
    assert prompt_tokens(max_frames=2) < default  # 2 frames: 1 group
    assert prompt_tokens(fps=8) > prompt_tokens(fps=8, max_frames=8) > default  # 16 frames; capped at 8


@pytest.mark.parametrize("case", [
    "undecodable", "broken-file", "not-video-type", "data-image-type", "http-404", "timeout", "too-large",
    "domain", "outside-dir", "too-many", "bad-fps", "bad-max-frames", "no-url", "bad-scheme", "bad-kwargs"])
def test_bad_video_is_a_400(qwen3_server, media_dir, media_url, case):
    q = "What happens?"
    messages, extra, fragment = None, {}, ""
    clip = clip_data_url(media_dir / "clip.mp4")
    if case == "undecodable":
        garbage = "data:video/mp4;base64," + base64.b64encode(b"not a video at all" * 20).decode()
        messages, fragment = video_message(q, garbage), "could not be decoded"
    elif case == "broken-file":
        messages, fragment = video_message(q, f"file://{media_dir / 'broken.mp4'}"), "could not be decoded"
    elif case == "not-video-type":
        messages, fragment = video_message(q, f"{media_url}/red.png"), "not a video"
    elif case == "data-image-type":
        messages, fragment = video_message(q, data_url(media_dir / "red.png")), "not a video"
    elif case == "http-404":
        messages, fragment = video_message(q, f"{media_url}/missing.mp4"), "HTTP 404"
    elif case == "timeout":
        messages, fragment = video_message(q, f"{media_url}/slow/clip.mp4"), "timed out"
    elif case == "too-large":
        big = "data:video/mp4;base64," + "A" * 400_000
        messages, fragment = video_message(q, big), "larger than"
    elif case == "domain":
        messages, fragment = video_message(q, f"{media_url}/clip.mp4".replace("127.0.0.1", "localhost")), "not allowed"
    elif case == "outside-dir":
        messages, fragment = video_message(q, f"file://{media_dir.parent}/x.mp4"), "outside the allowed"
    elif case == "too-many":
        messages, fragment = video_message(q, clip, clip, clip), "limit is 2"
    elif case == "bad-fps":
        messages, extra, fragment = video_message(q, clip), {"mm_processor_kwargs": {"fps": 0}}, "fps must be"
    elif case == "bad-max-frames":
        messages, extra = video_message(q, clip), {"mm_processor_kwargs": {"max_frames": 10_000}}
        fragment = "max_frames must be"
    elif case == "no-url":
        messages, fragment = [{"role": "user", "content": [{"type": "video_url", "video_url": {}}]}], "needs a url"
    elif case == "bad-scheme":
        messages, fragment = video_message(q, "ftp://127.0.0.1/clip.mp4"), "unsupported video URL scheme"
    elif case == "bad-kwargs":
        messages, extra = video_message(q, clip), {"mm_processor_kwargs": {"num_frames": 3}}
        fragment = "unsupported num_frames"
    assert_400(qwen3_server, messages, fragment, **extra)


def test_engine_keeps_serving_after_bad_video(qclient, qwen3_server, media_dir):
    url = f"file://{media_dir / 'clip.mp4'}"
    want = ask(qclient, video_message("Still there?", url))
    assert_400(qwen3_server, video_message("x", f"file://{media_dir / 'broken.mp4'}"), "decoded")
    again = ask(qclient, video_message("Still there?", url))
    assert again.choices[0].message.content == want.choices[0].message.content
    health = httpx.get(qwen3_server.url + "/health").json()
    assert health["engine"]["state"] == "running" and health["engine"]["errors"] == 0


def test_video_to_text_only_model_is_a_400(server, media_dir):
    from conftest import API_KEY

    r = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                   json={"model": "random-llama", "max_tokens": 4,
                         "messages": video_message("What is this?", clip_data_url(media_dir / "clip.mp4"))},
                   timeout=30)
    assert r.status_code == 400
    assert "reads text only" in r.json()["error"]["message"]


def test_limit_flag_forms():
    assert parse_limits('{"image": 4, "video": 1}') == {"image": 4, "video": 1}
    assert parse_limits("image=4,video=0") == {"image": 4, "video": 0}
    assert parse_limits(None) == {} and parse_limits(" ") == {}
    for bad in ("image", "image=x", "[1]", "{bad json"):
        with pytest.raises(ValueError, match="--limit-mm-per-prompt"):
            parse_limits(bad)


def test_chunked_prefill_feeds_deepstack_to_each_chunk(qwen3_vl_dir, media_dir):
    """A Qwen3-VL prompt with an image and a video prefilled in chunks of 7 tokens (visual
    tokens split across chunks, deepstack features sliced to each) leaves the same caches
    and next-token logits as one chunk; a prefix already in the caches (the prefix cache's
    case) too."""
    import json

    import mlx.core as mx
    from PIL import Image

    from vllm_mlx.core.mrope import MRopeKVCache
    from vllm_mlx.core.vision import VisionPrefill
    from vllm_mlx.plugins.builtin.qwen_vl import QwenVLLoader
    from vllm_mlx.server.media import Picture
    from vllm_mlx.server.video import decode_video
    from vllm_mlx.server.vision_prompt import run_processor

    loaded = QwenVLLoader().load(qwen3_vl_dir, json.loads((qwen3_vl_dir / "config.json").read_text()))
    text = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "Is the picture in the clip?"}, {"type": "image"},
                                      {"type": "video"}]}], tokenize=False, add_generation_prompt=True)
    picture = Picture(Image.open(media_dir / "red.png").convert("RGB"), b"red")
    clip = decode_video((media_dir / "clip.mp4").read_bytes(), "test")
    tokens, mm = run_processor(loaded.processor, text, [picture], {}, [clip])
    assert len(tokens) > 40

    def run(step: int, start: int = 0):
        caches = [MRopeKVCache() for _ in loaded.model.layers]
        prefill = VisionPrefill(loaded.model, step_size=step)
        if start:  # the caches already hold ``start`` tokens (as from the prefix cache)
            VisionPrefill(loaded.model, step_size=1000).prefill(tokens, mm, caches, 0)
            for c in caches:
                c.trim(c.offset - start)
        assert prefill.prefill(tokens, mm, caches, start) == len(tokens) - 1
        logits = loaded.model(mx.array(tokens[-1:])[None], cache=caches)
        return logits[0, -1], caches[0].keys[..., :len(tokens) - 1, :]

    whole_logits, whole_keys = run(1000)
    inside_video = tokens.index(loaded.model.vlm.config.video_token_id) + 2
    for step, start in ((7, 0), (5, inside_video)):
        logits, keys = run(step, start)
        assert mx.allclose(logits, whole_logits, atol=1e-4).item(), (step, start)
        assert mx.allclose(keys, whole_keys, atol=1e-4).item(), (step, start)


def test_video_url_shorthand(qclient, media_dir):
    """vLLM's bare-string form of a video part gives what the object form gives."""
    url = f"file://{media_dir / 'clip2.mp4'}"
    full = ask(qclient, video_message("Shorthand?", url))
    bare = ask(qclient, [{"role": "user", "content": [{"type": "text", "text": "Shorthand?"},
                                                      {"type": "video_url", "video_url": url}]}])
    assert bare.choices[0].message.content == full.choices[0].message.content
    assert bare.usage.prompt_tokens == full.usage.prompt_tokens
