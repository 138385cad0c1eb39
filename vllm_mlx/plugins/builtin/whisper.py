"""Whisper speech-to-text, loaded through mlx-audio (``pip install vllm-mlx[audio]``).

mlx-audio builds Whisper in float16; on MLX's CPU backend float16 runs ~9x slower than
float32, so off Apple's GPU the weights are cast to float32 here."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from ..hookspecs import hookimpl
from ..interfaces import LoadedModel, ModelLoader


class WhisperLoader(ModelLoader):
    name = "whisper"
    kind = "stt"
    priority = 10

    def detect(self, path: Path, config: dict) -> bool:
        return config.get("model_type") == "whisper" or ("n_audio_ctx" in config and "n_text_ctx" in config)

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        try:
            import mlx.core as mx
            import mlx.nn as nn
            from mlx.utils import tree_unflatten
            from mlx_audio.stt.models.whisper.whisper import Model, ModelDimensions
        except ImportError as exc:
            raise RuntimeError("Whisper models need mlx-audio: pip install 'vllm-mlx[audio]'") from exc
        from ...speech.whisper_units import split_encoder_block

        on_gpu = mx.default_device() == mx.gpu and mx.metal.is_available()
        dtype = mx.float16 if on_gpu else mx.float32
        model = Model(ModelDimensions.from_dict(config), dtype=dtype)
        weights: dict = {}
        for f in sorted(glob.glob(str(path / "*.safetensors"))):
            weights.update(mx.load(f))
        weights = model.sanitize(weights)
        if config.get("quantization"):
            q = config["quantization"]
            nn.quantize(model, group_size=q["group_size"], bits=q["bits"],
                        class_predicate=lambda p, m: isinstance(m, (nn.Linear, nn.Embedding))
                        and f"{p}.scales" in weights)
        else:
            weights = {k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()}
        model.update(tree_unflatten(list(weights.items())))
        mx.eval(model.parameters())
        model = Model.post_load_hook(model, path)
        if getattr(model, "_processor", None) is None:
            raise RuntimeError(f"{path} has no Whisper tokenizer/processor files (tokenizer.json, "
                               "preprocessor_config.json)")
        return LoadedModel(model=model, tokenizer=model._processor.tokenizer, kind="stt", config=config,
                           path=path, loader=self.name, context_length=model.dims.n_text_ctx,
                           # a 30 s window is one encoder pass and up to n_text_ctx decoder calls: each
                           # decoder call is one turn on a shared device, each encoder block several
                           turn_units=(("encoder.blocks", split_encoder_block), "decoder"))


@hookimpl
def register_model_loaders():
    return [WhisperLoader()]
