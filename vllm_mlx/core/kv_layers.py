"""Per-layer KV cache operations the prefix cache needs: which mlx-lm cache
types can be shared by blocks, cutting a sequence's cache into blocks, and
rebuilding a cache from blocks.

A layer's block data is the pytree ``(keys, values)`` for the block's tokens,
sequence on axis 2: plain arrays for ``KVCache``, ``(packed, scales, biases)``
triples for the quantized cache.

Rotating (sliding-window) caches are not shareable: after a prompt they hold
only the last window of keys, and resuming at an earlier position would need
keys they already dropped. Models with such layers run without prefix sharing
unless their cache policy gives every layer a full cache (Gemma 3:
``--sliding-window 0``).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten, tree_map
from mlx_lm.models.cache import KVCache

from .kv_quantized import PagedQuantizedKVCache

SHAREABLE = (KVCache, PagedQuantizedKVCache)


def shareable(caches: list[Any]) -> str | None:
    """None when every layer's cache can be shared by blocks, else why not."""
    for i, c in enumerate(caches):
        if type(c) not in SHAREABLE:
            return f"layer {i} uses {type(c).__name__}"
    return None


def cut_blocks(cache: Any, start: int, end: int, block_size: int) -> list[Any]:
    """Own copies of tokens [start, end) of one layer's single-sequence cache, one per block."""
    kv = (cache.keys, cache.values)
    out = []
    for s in range(start, end, block_size):
        out.append(tree_map(lambda x, s=s: mx.contiguous(x[..., s:s + block_size, :]), kv))
    return out


def rebuild(template: Any, parts: list[Any]) -> Any:
    """``template`` (a fresh cache of the layer's type) filled with the blocks' data."""
    if len(parts) == 1:
        keys, values = parts[0]
    else:
        keys, values = tree_map(lambda *xs: mx.concatenate(xs, axis=2), *parts)
    template.keys, template.values = keys, values
    template.offset = sum(_length(p) for p in parts)
    return template


def _length(part: Any) -> int:
    return tree_flatten(part)[0][1].shape[2]


def per_token_bytes(caches: list[Any]) -> int:
    """KV bytes one token costs over all layers, read off caches that hold >= 1 token."""
    total = 0
    for c in caches:
        if getattr(c, "keys", None) is None:
            continue
        leaves = [x for _, x in tree_flatten((c.keys, c.values))]
        total += sum(x.nbytes // x.shape[2] for x in leaves if x.ndim == 4 and x.shape[2])
    return total


def arrays(data: list[Any]) -> list[mx.array]:
    return [x for _, x in tree_flatten(data)]
