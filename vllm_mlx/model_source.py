"""Find a model's folder (local path, Hugging Face repo id, or the demo model) and
load it through the first plugin loader that recognises it."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from .plugins import PluginManager
from .plugins.interfaces import LoadedModel

log = logging.getLogger("vllm_mlx.models")

HUB_PATTERNS = ["*.json", "*.safetensors", "*.py", "tokenizer.model", "*.tiktoken", "*.txt", "*.jinja"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelSourceError(RuntimeError):
    """The model could not be found, downloaded or recognised; the message says which."""


def resolve_model_path(model: str | None) -> tuple[Path, bool]:
    """Return (folder, is_demo). ``None`` means the built-in demo model."""
    if model is None:
        from .demo import ensure_demo_model

        return ensure_demo_model(), True
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"{path} is not a model folder: it has no config.json")
        return path.resolve(), _is_demo(path)
    if not _REPO_ID.match(model):
        raise ModelSourceError(f"{model!r} is neither a local folder nor a Hugging Face repo id (org/name)")
    return _download(model), False


def _is_demo(path: Path) -> bool:
    return (path / "demo_model.json").is_file()


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError, LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
    )

    log.info("fetching %s from the Hugging Face hub", repo_id)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise ModelSourceError(
            f"cannot download {repo_id!r}: the Hugging Face hub is unreachable (offline?) and the model is not "
            f"in the local cache ({type(exc).__name__})") from None
    except GatedRepoError:
        raise ModelSourceError(f"{repo_id!r} is gated on the hub: accept its licence and log in "
                               "(huggingface-cli login)") from None
    except RepositoryNotFoundError:
        raise ModelSourceError(f"no model {repo_id!r} on the Hugging Face hub (or it is private)") from None
    except OSError as exc:  # connection errors surface as OSError subclasses
        raise ModelSourceError(f"cannot download {repo_id!r}: {type(exc).__name__}: {exc}") from None


def read_config(path: Path) -> dict:
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"cannot read {path / 'config.json'}: {exc}") from None


RUNNERS = ("auto", "generate", "pooling")


def load_model(model: str | None, plugins: PluginManager, kinds: tuple[str, ...] | None = None,
               runner: str = "auto", lazy_kinds: tuple[str, ...] = ()) -> LoadedModel:
    """Load with the first loader that recognises the folder; ``kinds`` limits what
    may be loaded (checked before any weights are read). ``runner`` is vLLM's
    choice: ``pooling`` asks only embedding loaders (``accepts``), ``generate``
    skips them, ``auto`` takes whichever ``detect`` claims the folder first. A loader of one of
    ``lazy_kinds`` is asked (``lazy=True``) not to read the weights into memory: the caller only
    needs the model's structure and settings (the engine then runs in another process)."""
    if runner not in RUNNERS:
        raise ModelSourceError(f"unknown runner {runner!r}; choose one of: {', '.join(RUNNERS)}")
    path, is_demo = resolve_model_path(model)
    config = read_config(path)
    loaders = plugins.model_loaders()
    if runner == "pooling":
        chosen = next((l for l in loaders if l.kind == "embedding" and l.accepts(path, config)), None)
        if chosen is None:
            raise ModelSourceError(f"--runner pooling: no embedding loader can load {path} (model_type "
                                   f"{config.get('model_type')!r})")
    else:
        if runner == "generate":
            loaders = [l for l in loaders if l.kind != "embedding"]
        chosen = next((l for l in loaders if l.detect(path, config)), None)
    if chosen is None:
        names = ", ".join(l.name for l in plugins.model_loaders())
        raise ModelSourceError(f"no loader recognises {path} (model_type {config.get('model_type')!r}); "
                               f"loaders: {names}")
    if kinds is not None and chosen.kind not in kinds:
        raise ModelSourceError(f"{path} is a {chosen.kind} model ({chosen.name} loader); this server "
                               f"serves {', '.join(kinds)} models")
    log.info("loading %s with the %r loader", path, chosen.name)
    try:
        loaded = chosen.load(path, config, **({"lazy": True} if chosen.kind in lazy_kinds else {}))
    except Exception as exc:
        raise ModelSourceError(f"the {chosen.name!r} loader failed on {path}: "
                               f"{type(exc).__name__}: {exc}") from exc
    loaded.path = loaded.path or path
    loaded.loader = loaded.loader or chosen.name
    loaded.is_demo = is_demo
    return loaded


def sampling_defaults(path: Path | None) -> dict:
    """The model's own sampling defaults from generation_config.json, if any."""
    if path is None or not (path / "generation_config.json").is_file():
        return {}
    try:
        cfg = json.loads((path / "generation_config.json").read_text())
    except (OSError, ValueError):
        return {}
    keys = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")
    return {k: cfg[k] for k in keys if isinstance(cfg.get(k), (int, float))}
