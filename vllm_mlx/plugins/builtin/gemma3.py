"""Gemma 3 family: text checkpoints load through mlx-lm; the multimodal
checkpoints (``gemma3`` with a SigLIP vision tower) through mlx-vlm, as kind
``mllm`` (``plugins/builtin/mlx_vlm_loader.py``). Tool calls are Python calls in a ``tool_code`` block
(``parsers/gemma_tool_code.py``).

The ``gemma3`` cache policy: five of every six Gemma 3 layers attend only to a
sliding window (512 tokens in the released models) and by default keep a
rotating cache of that window. ``--sliding-window 0`` gives those layers a full
cache instead: more memory per long sequence, but every layer can then be
shared by the prefix cache (rotating layers cannot be, see ``core.kv_layers``),
and no installed file needs editing for long contexts. ``--sliding-window N``
(N at least the model's window) keeps a larger rotating window. Attention masks
still use the model's own window, so the output is the same in every setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_lm.models.cache import KVCache, RotatingKVCache

from ..hookspecs import hookimpl
from ..interfaces import CacheOptions, CachePolicy, LoadedModel, ModelLoader
from .cache_policies import quantize_full_layers
from ..parsers.gemma_tool_code import GemmaToolCodeParser
from .mlx_lm_loader import load_with_mlx_lm, mlx_lm_supports
from .mlx_vlm_loader import has_vision_tower, load_with_mlx_vlm


class Gemma3TextLoader(ModelLoader):
    name = "gemma3"
    kind = "llm"
    priority = 10

    def detect(self, path: Path, config: dict) -> bool:
        return config.get("model_type") in ("gemma3_text", "gemma3") and "vision_config" not in config \
            and mlx_lm_supports(config)

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        return load_with_mlx_lm(path, config, self.name, **options)


class Gemma3VisionLoader(ModelLoader):
    name = "gemma3-vision"
    kind = "mllm"
    priority = 10

    def detect(self, path: Path, config: dict) -> bool:
        return config.get("model_type") == "gemma3" and has_vision_tower(config)

    def load(self, path: Path, config: dict, **options: Any) -> LoadedModel:
        return load_with_mlx_vlm(path, config, self.name, encode=encode_gemma3_images, **options)


def encode_gemma3_images(vlm: Any, pixel_values: Any, **_: Any) -> Any:
    """SigLIP features projected into the text space: what mlx-vlm's Gemma 3
    ``get_input_embeddings`` computes before scattering them into the prompt (it
    accepts them back as ``cached_image_features``; mlx-vlm has no function for this
    step alone)."""
    dtype = vlm.language_model.model.embed_tokens.weight.dtype
    hidden, _, _ = vlm.vision_tower(pixel_values.transpose(0, 2, 3, 1).astype(dtype), output_hidden_states=True)
    return vlm.multi_modal_projector(hidden)


class Gemma3CachePolicy(CachePolicy):
    name = "gemma3"
    priority = 10

    def applies(self, model: Any, config: dict) -> bool:
        return config.get("model_type") in ("gemma3_text", "gemma3")

    def make_cache(self, model: Any, options: CacheOptions) -> list[Any]:
        args = model.args
        window, pattern = args.sliding_window, args.sliding_window_pattern
        size = options.sliding_window
        if size is not None and 0 < size < window:
            raise ValueError(f"--sliding-window {size} is smaller than the model's attention window ({window}); "
                             "that would change its answers. Use 0 (full cache) or at least the window.")
        caches: list[Any] = []
        for i in range(args.num_hidden_layers):
            if i % pattern == pattern - 1 or size == 0:
                caches.append(KVCache())
            else:
                caches.append(RotatingKVCache(max_size=size or window))
        return quantize_full_layers(caches, options)


@hookimpl
def register_model_loaders():
    return [Gemma3TextLoader(), Gemma3VisionLoader()]


@hookimpl
def register_cache_policies():
    return [Gemma3CachePolicy]


@hookimpl
def register_tool_parsers():
    return [GemmaToolCodeParser]
