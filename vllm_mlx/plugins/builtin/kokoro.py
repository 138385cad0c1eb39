"""Kokoro text-to-speech: detected here; loaded through mlx-audio (``pip install
vllm-mlx[audio]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..hookspecs import hookimpl
from ..interfaces import LoadedModel, ModelLoader


class KokoroLoader(ModelLoader):
    name = "kokoro"
    kind = "tts"
    priority = 10

    def detect(self, path: Path, config: dict) -> bool:
        return config.get("model_type") == "kokoro" or ("istftnet" in config and "plbert" in config)

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        try:
            from mlx_audio.tts.utils import load_model
        except ImportError as exc:
            raise RuntimeError("Kokoro models need mlx-audio: pip install 'vllm-mlx[audio]'") from exc
        model = load_model(str(path))
        return LoadedModel(model=model, tokenizer=None, kind="tts", config=config, path=path, loader=self.name)


@hookimpl
def register_model_loaders():
    return [KokoroLoader()]
