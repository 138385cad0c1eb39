"""The generic mlx-audio loaders: any text-to-speech or speech-to-text model type that the
installed mlx-audio implements (Chatterbox, VibeVoice, VoxCPM, Parakeet, ...), beside the
tuned Kokoro and Whisper loaders (which claim their folders first). A model type that
mlx-lm also implements (``llama``, ``qwen3``) stays with the LLM loaders.

Model-specific ``generate`` options pass through the request (``extra_body``); see
``vllm_mlx/speech/mlx_audio_models.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..hookspecs import hookimpl
from ..interfaces import LoadedModel, ModelLoader
from .mlx_lm_loader import mlx_lm_supports

# families with their own loader here, or that are not models to serve
_SKIP = {"kokoro", "whisper"}


def _family(config: dict, category: str) -> str | None:
    from ...speech.mlx_audio_models import resolve_family

    if mlx_lm_supports(config):
        return None
    family = resolve_family(config, category)
    return None if family in _SKIP else family


class MlxAudioTTSLoader(ModelLoader):
    name = "mlx-audio-tts"
    kind = "tts"
    priority = 5

    def detect(self, path: Path, config: dict) -> bool:
        return _family(config, "tts") is not None

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        from ...speech.mlx_audio_models import MlxAudioTTSRunner, load_tts

        family = _family(config, "tts")
        model = load_tts(path, config, family)
        return LoadedModel(model=MlxAudioTTSRunner(model, path, family), tokenizer=None, kind="tts",
                           config=config, path=path, loader=f"{self.name}:{family}")


class MlxAudioSTTLoader(ModelLoader):
    name = "mlx-audio-stt"
    kind = "stt"
    priority = 4

    def detect(self, path: Path, config: dict) -> bool:
        return _family(config, "stt") is not None

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        from ...speech.mlx_audio_models import MlxAudioSTTModel, load_stt

        family = _family(config, "stt")
        model = MlxAudioSTTModel(load_stt(path), family)
        return LoadedModel(model=model, tokenizer=None, kind="stt", config=config, path=path,
                           loader=f"{self.name}:{family}")


@hookimpl
def register_model_loaders():
    return [MlxAudioTTSLoader(), MlxAudioSTTLoader()]
