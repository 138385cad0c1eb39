"""The built-in demo model: a tiny Qwen3-format MLX model, trained in a few
seconds at first use, that answers a handful of scripted conversations
(greeting, reasoning, tool call, ...) exactly. It lets the server run and be
tested end to end without downloading a real model.

``build_demo_model(out_dir)`` writes the model folder; ``ensure_demo_model()``
builds it once into the cache and returns its path.
"""

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from .scripts import SCRIPTS

__all__ = [
    "SCRIPTS",
    "DEMO_VERSION",
    "build_demo_model",
    "ensure_demo_model",
    "is_demo_model",
]

DEMO_VERSION = 1
DEMO_DIR_NAME = f"demo-model-v{DEMO_VERSION}"
MARKER_FILE = "demo_model.json"
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)
DESCRIPTION = (
    "vllm-mlx built-in demo model: a tiny network trained only to reproduce "
    "a few scripted conversations so the server can be tried and tested "
    "without downloading a model. Its answers are not meaningful."
)


def build_demo_model(out_dir, log=print) -> Path:
    """Train the demo model and write it to ``out_dir`` as an MLX LM model
    folder (``mlx_lm.load`` reads it). Deterministic; raises if the trained
    model does not reproduce every script."""
    from mlx_lm.utils import load_tokenizer

    from .tokenizer import EOS_TOKEN, PAD_TOKEN, train_tokenizer, write_tokenizer
    from .train import (
        encode_scripts,
        model_config,
        train_model,
        verify_model_dir,
        write_model,
    )

    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tok = train_tokenizer()
    write_tokenizer(tok, out)
    config = model_config(
        tok.get_vocab_size(), tok.token_to_id(EOS_TOKEN), tok.token_to_id(PAD_TOKEN)
    )
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    examples = encode_scripts(load_tokenizer(out))
    model, stats = train_model(config, examples, log=log)
    write_model(model, config, out)
    verify_model_dir(out)

    marker = {"vllm_mlx_demo": True, "version": DEMO_VERSION, "description": DESCRIPTION}
    (out / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    log(
        f"demo model built in {time.perf_counter() - start:.1f}s "
        f"(vocab {config['vocab_size']}, {stats['steps']} steps, "
        f"final loss {stats['loss']:.4f}): {out}"
    )
    return out


def is_demo_model(path) -> bool:
    """True if ``path`` is a complete demo model folder of this version."""
    path = Path(path)
    try:
        marker = json.loads((path / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("vllm_mlx_demo") is True
        and marker.get("version") == DEMO_VERSION
        and all((path / name).is_file() for name in MODEL_FILES)
    )


def default_cache_dir() -> Path:
    """``$VLLM_MLX_CACHE_DIR``, else ``$XDG_CACHE_HOME/vllm-mlx``, else
    ``~/.cache/vllm-mlx``."""
    explicit = os.environ.get("VLLM_MLX_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "vllm-mlx"


def ensure_demo_model(cache_dir=None) -> Path:
    """Return the cached demo model folder, building it first if needed.

    The build goes to a temporary folder beside the final one and is renamed
    into place atomically; if another process wins that race, its folder is
    used and ours is discarded. A lock file (where supported) makes
    concurrent callers wait for one build instead of each training a copy."""
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    final = root / DEMO_DIR_NAME
    if is_demo_model(final):
        return final

    root.mkdir(parents=True, exist_ok=True)
    with _build_lock(root / f".{DEMO_DIR_NAME}.lock"):
        if is_demo_model(final):
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{DEMO_DIR_NAME}.build-", dir=root))
        try:
            os.chmod(tmp, 0o755)
            build_demo_model(tmp, log=logging.getLogger(__name__).info)
            if final.exists() and not is_demo_model(final):
                _discard(final, root)
            try:
                os.rename(tmp, final)
            except OSError:
                if not is_demo_model(final):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextlib.contextmanager
def _build_lock(path):
    """Exclusive advisory lock on ``path``; a no-op where flock is missing.
    Correctness never depends on it: the atomic rename does."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _discard(path, root):
    """Move an incomplete or stale folder out of the way, then delete it."""
    trash = Path(tempfile.mkdtemp(prefix=f".{DEMO_DIR_NAME}.stale-", dir=root))
    try:
        os.rename(path, trash / "old")
    except FileNotFoundError:
        pass
    shutil.rmtree(trash, ignore_errors=True)
