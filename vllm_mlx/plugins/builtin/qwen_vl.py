"""Qwen-VL family (Qwen2-VL, Qwen2.5-VL): vision-language checkpoints through mlx-vlm,
kind ``mllm``, with Hermes tool calls like the text Qwen models.

Their multimodal rotary positions need a per-sequence offset in the shared batch:
the ``qwen_vl`` cache policy gives every layer an ``MRopeKVCache`` that carries it
(``core/mrope.py``); the prefix cache shares them like plain ``KVCache`` layers
(the delta is recomputed from the whole prompt at every admission). Qwen3-VL
(deepstack features injected in the first layers) is not handled yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.mrope import MRopeKVCache
from ..hookspecs import hookimpl
from ..interfaces import CacheOptions, CachePolicy, LoadedModel, ModelLoader
from .mlx_vlm_loader import has_vision_tower, load_with_mlx_vlm

QWEN_VL_TYPES = {"qwen2_vl", "qwen2_5_vl"}


class QwenVLLoader(ModelLoader):
    name = "qwen-vl"
    kind = "mllm"
    priority = 10

    def detect(self, path: Path, config: dict) -> bool:
        return config.get("model_type") in QWEN_VL_TYPES and has_vision_tower(config)

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        loaded = load_with_mlx_vlm(path, config, self.name, encode=encode_qwen_vl_images, **options)
        loaded.default_tool_parser = "hermes"
        return loaded


def encode_qwen_vl_images(vlm: Any, pixel_values: Any, image_grid_thw: Any = None, **_: Any) -> Any:
    """The vision tower's merged patch features, as mlx-vlm's Qwen-VL
    ``get_input_embeddings`` computes them (and accepts back as ``cached_image_features``)."""
    dtype = vlm.vision_tower.patch_embed.proj.weight.dtype
    return vlm.vision_tower(pixel_values.astype(dtype), image_grid_thw, output_hidden_states=False)


class QwenVLCachePolicy(CachePolicy):
    name = "qwen_vl"
    priority = 10

    def applies(self, model: Any, config: dict) -> bool:
        return config.get("model_type") in QWEN_VL_TYPES

    def make_cache(self, model: Any, options: CacheOptions) -> list[Any]:
        if options.kv_bits or options.sliding_window is not None:
            raise ValueError("Qwen-VL models support neither --kv-cache-bits nor --sliding-window yet")
        return [MRopeKVCache() for _ in model.layers]


@hookimpl
def register_model_loaders():
    return [QwenVLLoader()]


@hookimpl
def register_cache_policies():
    return [QwenVLCachePolicy]
