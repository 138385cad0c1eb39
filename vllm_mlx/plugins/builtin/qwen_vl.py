"""Qwen-VL family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3-VL MoE): vision-language checkpoints through
mlx-vlm, kind ``mllm``, images and video, with Hermes tool calls like the text Qwen models.

Their multimodal rotary positions need a per-sequence offset in the shared batch:
the ``qwen_vl`` cache policy gives every layer an ``MRopeKVCache`` that carries it
(``core/mrope.py``); the prefix cache shares them like plain ``KVCache`` layers
(the delta is recomputed from the whole prompt at every admission).

The prompt embeddings are assembled here (``embed_qwen_vl``) rather than by mlx-vlm's
``get_input_embeddings``, because in mlx-vlm 0.7.10 that function (a) for Qwen2/2.5-VL
and Qwen3-VL MoE encodes only one kind when a prompt has both images and a video, and
(b) for Qwen3-VL (MoE too) drops the deepstack features when given cached encoder outputs.
Ours encodes images and videos separately (each through the encoder cache), scatters
each at its own placeholder tokens, and for Qwen3-VL lines the deepstack features up
with the visual tokens in prompt order; ``core.vision.VisionPrefill`` then feeds them
to the first decoder layers chunk by chunk, for this request only.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlx.core as mx

from ...core.mrope import MRopeKVCache
from ..hookspecs import hookimpl
from ..interfaces import CacheOptions, CachePolicy, LoadedModel, ModelLoader
from .mlx_vlm_loader import has_vision_tower, load_with_mlx_vlm

QWEN_VL_TYPES = {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"}
DEEPSTACK_TYPES = {"qwen3_vl", "qwen3_vl_moe"}


class QwenVLLoader(ModelLoader):
    name = "qwen-vl"
    kind = "mllm"
    priority = 10

    def detect(self, path: Path, config: dict) -> bool:
        return config.get("model_type") in QWEN_VL_TYPES and has_vision_tower(config)

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        loaded = load_with_mlx_vlm(path, config, self.name, embed=embed_qwen_vl, video=True, **options)
        loaded.default_tool_parser = "hermes"
        return loaded


def encode_qwen_vl_images(vlm: Any, pixel_values: Any, image_grid_thw: Any = None, **_: Any) -> Any:
    """The vision tower's merged patch features (Qwen2/2.5-VL), or for Qwen3-VL the pair
    (features, per-layer deepstack features), of images or of a video's frames."""
    dtype = vlm.vision_tower.patch_embed.proj.weight.dtype
    if vlm.config.model_type in DEEPSTACK_TYPES:
        features, deepstack = vlm.vision_tower(pixel_values.astype(dtype), image_grid_thw)
        return features, list(deepstack or [])
    return vlm.vision_tower(pixel_values.astype(dtype), image_grid_thw, output_hidden_states=False)


_KINDS = (("image", "pixel_values", "image_grid_thw", "image_token_id"),
          ("video", "pixel_values_videos", "video_grid_thw", "video_token_id"))


def embed_qwen_vl(vlm: Any, ids: mx.array, mm: Any, encoder_cache: Any) -> SimpleNamespace:
    """One prompt's input embeddings, rotary positions and (Qwen3-VL) deepstack inputs."""
    import numpy as np

    arrays = mm.arrays()
    lm, config = vlm.language_model, vlm.config
    embeds = lm.model.embed_tokens(ids)
    tokens = np.array(ids[0])
    deep = config.model_type in DEEPSTACK_TYPES
    visual = np.zeros(tokens.shape, dtype=bool)
    found: list[tuple[np.ndarray, list[mx.array]]] = []  # (token positions, deepstack layers) per kind
    for kind, pixel_name, grid_name, token_attr in _KINDS:
        pixels = arrays.get(pixel_name)
        if pixels is None:
            continue
        key = mm.features_keys.get(kind)
        out = encoder_cache.get(key) if key else None
        if out is None:
            out = encode_qwen_vl_images(vlm, pixels, arrays.get(grid_name))
            mx.eval(out)
            if key:
                encoder_cache.put(key, out)
        features, layers = out if deep else (out, [])
        where = np.flatnonzero(tokens == getattr(config, token_attr))
        if where.size != features.shape[0]:
            raise ValueError(f"{kind} features and placeholder tokens differ: {features.shape[0]} vs {where.size}")
        embeds[0, mx.array(where, dtype=mx.uint32)] = features.astype(embeds.dtype)
        visual[where] = True
        found.append((where, layers))
    mask = mx.ones(ids.shape, dtype=mx.int32)
    positions, deltas = lm.get_rope_index(ids, arrays.get("image_grid_thw"), arrays.get("video_grid_thw"), mask)
    result = SimpleNamespace(inputs_embeds=embeds, position_ids=positions, rope_deltas=deltas,
                             visual_pos_masks=None, deepstack_visual_embeds=None)
    if deep and found and found[0][1]:
        columns = np.flatnonzero(visual)
        merged = []
        for layer in range(len(found[0][1])):
            rows = mx.zeros((columns.size, found[0][1][layer].shape[-1]), dtype=found[0][1][layer].dtype)
            for where, layers in found:
                rows[mx.array(np.searchsorted(columns, where), dtype=mx.uint32)] = layers[layer]
            merged.append(rows)
        result.visual_pos_masks = mx.array(visual)[None]
        result.deepstack_visual_embeds = merged
    return result


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
