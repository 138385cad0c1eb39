"""Built-in cache policies: ``default`` (the model's own caches) and ``quantized``
(the same, with full-attention layers' KV quantized). Gemma 3's policy lives in
the gemma3 plugin."""

from __future__ import annotations

from typing import Any

from mlx_lm.models.cache import KVCache, make_prompt_cache

from ...core.kv_quantized import PagedQuantizedKVCache
from ..hookspecs import hookimpl
from ..interfaces import CacheOptions, CachePolicy


def quantize_full_layers(caches: list[Any], options: CacheOptions, bits: int | None = None) -> list[Any]:
    """Swap every plain ``KVCache`` for a quantized one when bits are asked for."""
    bits = bits or options.kv_bits
    if not bits:
        return caches
    return [PagedQuantizedKVCache(options.kv_group_size, bits) if type(c) is KVCache else c for c in caches]


class DefaultPolicy(CachePolicy):
    """The caches the model asks for (mlx-lm's ``make_prompt_cache``); KV
    quantized when ``--kv-cache-bits`` is given."""

    name = "default"
    priority = 0

    def applies(self, model: Any, config: dict) -> bool:
        return True

    def make_cache(self, model: Any, options: CacheOptions) -> list[Any]:
        if options.sliding_window is not None:
            raise ValueError("--sliding-window applies to models with sliding-window layers "
                             "(Gemma 3: --cache-policy gemma3)")
        return quantize_full_layers(make_prompt_cache(model), options)


class QuantizedPolicy(DefaultPolicy):
    """Like ``default`` but always quantized (8 bits unless ``--kv-cache-bits`` says 4)."""

    name = "quantized"
    priority = -1  # never chosen by ``auto``; ask for it by name or with --kv-cache-bits

    def make_cache(self, model: Any, options: CacheOptions) -> list[Any]:
        return quantize_full_layers(make_prompt_cache(model), options, options.kv_bits or 8)


@hookimpl
def register_cache_policies():
    return [DefaultPolicy, QuantizedPolicy]
