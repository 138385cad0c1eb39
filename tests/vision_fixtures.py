"""Session fixtures of the vision tests (registered in conftest.py, shared by
test_vision.py and test_video.py): tiny Gemma 3, Qwen2.5-VL, Qwen3-VL and Qwen3-VL MoE servers, a
media folder with pictures and short mp4 clips, and a loopback HTTP server for it."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest

from server_process import ServerProcess
from vision_models import build_gemma3_vision, build_qwen2_5_vl, build_qwen3_vl, make_image, make_video

COLORS = {"red": (200, 30, 40), "green": (20, 180, 60), "blue": (30, 40, 210)}
MAX_BYTES = 200_000
# clip.mp4's frames (16 at 8 fps) sampled at the default 2 fps: every fourth
CLIP_FRAMES = [0, 4, 8, 12]


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
    make_video(d / "clip.mp4")  # 16 frames at 8 fps: red, then green, a square moving across
    make_video(d / "clip2.mp4", colors=((30, 40, 210), (230, 220, 20)))
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
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

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # a client that gave up (the timeout cases) is expected, not news

    httpd = Server(("127.0.0.1", 0), Handler)
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


@pytest.fixture(scope="session")
def qwen3_vl_dir(tmp_path_factory) -> Path:
    return build_qwen3_vl(tmp_path_factory.mktemp("models") / "qwen3-vl")


@pytest.fixture(scope="session")
def qwen3_server(qwen3_vl_dir, media_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "qwen3-vl.log"
    srv = ServerProcess([str(qwen3_vl_dir), "--served-model-name", "gemma3-vision", "--max-model-len", "512",
                         "--max-num-seqs", "16", "--allowed-local-media-path", str(media_dir), "--block-size", "8",
                         "--limit-mm-per-prompt", "image=2,video=2", "--allowed-media-domains", "127.0.0.1",
                         "--media-fetch-timeout", "1", "--media-max-bytes", str(MAX_BYTES)],
                        log_path=log).wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def qwen3_moe_dir(tmp_path_factory) -> Path:
    return build_qwen3_vl(tmp_path_factory.mktemp("models") / "qwen3-vl-moe", moe=True)


@pytest.fixture(scope="session")
def qwen3_moe_server(qwen3_moe_dir, media_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "qwen3-vl-moe.log"
    srv = ServerProcess([str(qwen3_moe_dir), "--served-model-name", "gemma3-vision", "--max-model-len", "512",
                         "--max-num-seqs", "16", "--allowed-local-media-path", str(media_dir)],
                        log_path=log).wait_ready()
    yield srv
    srv.stop()


FAMILIES = {"gemma3": ("vision_server", "gemma3_vision_dir"), "qwen2_5_vl": ("qwen_server", "qwen_vl_dir"),
            "qwen3_vl": ("qwen3_server", "qwen3_vl_dir"), "qwen3_vl_moe": ("qwen3_moe_server", "qwen3_moe_dir")}


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
