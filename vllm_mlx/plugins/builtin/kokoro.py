"""Kokoro text-to-speech, loaded through mlx-audio (``pip install vllm-mlx[audio]``).

Weights load in float32 off Apple's GPU (bf16/fp16 are slow on MLX's CPU backend), and
the decoder's convolutions take the matmul forms of ``speech/fast_conv.py``."""

from __future__ import annotations

import glob
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
            import mlx.core as mx
            from mlx_audio.tts.models.kokoro.kokoro import Model, ModelConfig
        except ImportError as exc:
            raise RuntimeError("Kokoro models need mlx-audio: pip install 'vllm-mlx[audio]'") from exc
        from ...speech.fast_conv import use_fast_convs
        from ...speech.synthesize import KokoroRunner

        on_gpu = mx.default_device() == mx.gpu and mx.metal.is_available()
        model = Model(ModelConfig.from_dict({**config, "model_path": str(path)}))
        weights: dict = {}
        for f in sorted(glob.glob(str(path / "*.safetensors"))):
            weights.update(mx.load(f))
        weights = model.sanitize(weights)
        if not on_gpu:
            weights = {k: v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v
                       for k, v in weights.items()}
        model.load_weights(list(weights.items()), strict=True)
        mx.eval(model.parameters())
        if not on_gpu:
            use_fast_convs(model)
        runner = KokoroRunner(model, path)
        if not runner.voices:
            raise RuntimeError(f"{path} has no voices (voices/*.safetensors)")
        # one sentence's stages, each a turn on a device shared with other engines (the generator's
        # upsampling and residual blocks are the long ones)
        units = ("model.bert", "model.predictor.text_encoder", "model.text_encoder", "model.decoder.encode",
                 "model.decoder.decode", "model.decoder.generator.ups", "model.decoder.generator.resblocks")
        return LoadedModel(model=runner, tokenizer=None, kind="tts", config=config, path=path, loader=self.name,
                           turn_units=units)


@hookimpl
def register_model_loaders():
    return [KokoroLoader()]
