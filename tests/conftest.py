"""Session fixtures: model folders built once, real servers on loopback ports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import vllm_mlx  # noqa: F401  (first: lets it pick OpenBLAS before mlx is imported)

sys.path.insert(0, str(Path(__file__).parent))

from model_factory import build_random_model  # noqa: E402
from server_process import ServerProcess  # noqa: E402

API_KEY = "sk-test-key"


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    return build_random_model(tmp_path_factory.mktemp("models") / "random-llama")


@pytest.fixture(scope="session")
def scripted_model_dir(tmp_path_factory) -> Path:
    """A tiny model trained to write tool calls and reasoning in several formats (scripted_model.py)."""
    from scripted_model import build_scripted_model

    return build_scripted_model(tmp_path_factory.mktemp("models") / "scripted")


@pytest.fixture(scope="session")
def mcp_model_dir(tmp_path_factory) -> Path:
    """A tiny model trained to call the MCP test toolbox's tools and read their results (mcp_model.py)."""
    from mcp_model import build_mcp_model

    prebuilt = os.environ.get("VLLM_MLX_TEST_MCP_MODEL")  # a folder built earlier, to iterate faster
    if prebuilt and (Path(prebuilt) / "model.safetensors").exists():
        return Path(prebuilt)
    return build_mcp_model(Path(prebuilt) if prebuilt else tmp_path_factory.mktemp("models") / "mcp")


@pytest.fixture(scope="session")
def mcp_stack(mcp_model_dir, tmp_path_factory):
    """The real server with --mcp-config: stdio and streamable-HTTP toolboxes (mcp_stack.py)."""
    from mcp_stack import start_stack

    stack = start_stack(mcp_model_dir, tmp_path_factory.mktemp("mcp"))
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def demo_cache_dir(tmp_path_factory) -> Path:
    return Path(os.environ.get("VLLM_MLX_TEST_DEMO_CACHE") or tmp_path_factory.mktemp("demo-cache"))


@pytest.fixture(scope="session")
def demo_model_dir(demo_cache_dir) -> Path:
    from vllm_mlx.demo import ensure_demo_model

    return ensure_demo_model(demo_cache_dir)


@pytest.fixture(scope="session")
def mlx_model(random_model_dir):
    """The random model loaded with plain mlx-lm, for reference outputs."""
    from mlx_lm import load

    return load(str(random_model_dir))


def _start(tmp_path_factory, name: str, args: list[str], env: dict | None = None) -> ServerProcess:
    log = tmp_path_factory.mktemp("logs") / f"{name}.log"
    return ServerProcess(args, env=env, log_path=log).wait_ready()


@pytest.fixture(scope="session")
def server(random_model_dir, tmp_path_factory):
    """The random model behind the real server, with an API key and a small context."""
    srv = _start(tmp_path_factory, "random", [str(random_model_dir), "--api-key", API_KEY,
                                              "--served-model-name", "random-llama", "--max-model-len", "512",
                                              "--max-num-seqs", "32", "--model-alias", "claude-*=default"])
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def demo_server(demo_model_dir, demo_cache_dir, tmp_path_factory):
    """`vllm-mlx serve` with no model: the demo model from the (test) user cache."""
    srv = _start(tmp_path_factory, "demo", [], env={"VLLM_MLX_CACHE_DIR": str(demo_cache_dir)})
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="session")
def async_client_factory(server):
    """Make an AsyncOpenAI client inside the event loop that will use it."""
    from openai import AsyncOpenAI

    return lambda: AsyncOpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def demo_client(demo_server):
    from openai import OpenAI

    return OpenAI(base_url=demo_server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


MAX_AUDIO = 3_000_000


@pytest.fixture(scope="session")
def whisper_dir(tmp_path_factory) -> Path:
    from speech_factory import build_whisper

    return build_whisper(tmp_path_factory.mktemp("models") / "whisper-random")


@pytest.fixture(scope="session")
def kokoro_dir(tmp_path_factory) -> Path:
    from speech_factory import build_kokoro

    return build_kokoro(tmp_path_factory.mktemp("models") / "kokoro-random")


@pytest.fixture(scope="session")
def multi_server(random_model_dir, whisper_dir, kokoro_dir, tmp_path_factory):
    """One server for three models: Whisper (first, so "default"), an LLM and Kokoro."""
    srv = _start(tmp_path_factory, "multi", [
        str(whisper_dir), str(random_model_dir), str(kokoro_dir), "--served-model-name", "whisper",
        "--served-model-name", "llm", "--served-model-name", "kokoro", "--max-audio-bytes", str(MAX_AUDIO),
        "--max-model-len", "256"])
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def mc(multi_server):
    from openai import OpenAI

    return OpenAI(base_url=multi_server.url + "/v1", api_key="unused", max_retries=0, timeout=120)

from vision_fixtures import *  # noqa: E402,F401,F403  (vision and video test fixtures)
