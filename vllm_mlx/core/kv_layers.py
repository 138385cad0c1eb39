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
from mlx_lm.models.cache import BatchKVCache, KVCache

from .kv_quantized import PagedQuantizedKVCache

from .mrope import MRopeKVCache

SHAREABLE = (KVCache, PagedQuantizedKVCache, MRopeKVCache)  # MRopeKVCache: a KVCache plus the sequence's rope delta


def shareable(caches: list[Any]) -> str | None:
    """None when every layer's cache can be shared by blocks, else why not."""
    for i, c in enumerate(caches):
        if type(c) not in SHAREABLE:
            return f"layer {i} uses {type(c).__name__}"
    return None


def cut_blocks(cache: Any, start: int, end: int, block_size: int) -> list[Any]:
    """Tokens [start, end) of one layer's single-sequence cache, one entry per block.

    The range is copied once (one kernel per array, however many blocks) and the
    blocks are views of that copy: a copy per block costs a kernel launch per
    block and layer, which profiling on a GPU showed as ~10% of the engine
    thread at 128 sequences. The blocks of one write share their buffer, so its
    memory returns when the last of them is evicted (the pool evicts a chain's
    tail first, so a write's blocks tend to leave together).
    """
    segment = tree_map(lambda x: mx.contiguous(x[..., start:end, :]), (cache.keys, cache.values))
    out = []
    for s in range(0, end - start, block_size):
        out.append(tree_map(lambda x, s=s: x[..., s:s + block_size, :], segment))
    return out


class BlockKVCache(KVCache):
    """A ``KVCache`` rebuilt from prefix blocks that merges into a batch cache in one copy.

    mlx-lm's ``BatchKVCache.merge`` copies each sequence's keys into an exactly
    sized batch array, and the first prefill chunk then grows that array by
    copying it again; with a concatenated prefix that is three copies of the
    whole prefix. This merge writes every block straight into a batch array with
    room for the next chunk: one copy. ``keys``/``values`` stay available (a lazy
    concatenation, never computed unless mlx-lm's own merge reads them, which
    happens when this cache is not the first of its batch).
    """

    def __init__(self, parts: list[Any]):
        super().__init__()
        self.parts = parts
        self.keys, self.values = tree_map(lambda *xs: mx.concatenate(xs, axis=2), *parts) \
            if len(parts) > 1 else parts[0]
        self.offset = self.keys.shape[2]

    def update_and_fetch(self, keys, values):
        # Written to before it joins a batch (a vision prompt is prefilled into it):
        # from now on the parts are the whole cache, so merge copies what was added too.
        out = super().update_and_fetch(keys, values)
        self.parts = [(self.keys[..., :self.offset, :], self.values[..., :self.offset, :])]
        return out

    @classmethod
    def merge(cls, caches):
        lengths = [c.size() for c in caches]
        longest = max(lengths)
        padding = [longest - n for n in lengths]
        batch = BatchKVCache(padding)
        if longest == 0:
            return batch
        ref = next(c for c in caches if c.keys is not None)
        _, heads, _, dk = ref.keys.shape
        dv, dtype = ref.values.shape[3], ref.keys.dtype
        room = (longest // BatchKVCache.step + 1) * BatchKVCache.step
        keys = mx.zeros((len(caches), heads, room, dk), dtype)
        values = mx.zeros((len(caches), heads, room, dv), dtype)
        for i, (pad, c) in enumerate(zip(padding, caches)):
            pieces = c.parts if isinstance(c, BlockKVCache) else ([(c.keys, c.values)] if c.keys is not None else [])
            at, end = pad, pad + c.offset
            for k, v in pieces:
                n = min(k.shape[2], end - at)
                if n <= 0:
                    break
                keys[i:i + 1, :, at:at + n] = k[..., :n, :]
                values[i:i + 1, :, at:at + n] = v[..., :n, :]
                at += n
        batch.keys, batch.values = keys, values
        batch.offset = batch.offset + longest
        batch._idx = longest
        return batch


def rebuild(template: Any, parts: list[Any]) -> Any:
    """``template`` (a fresh cache of the layer's type) filled with the blocks' data."""
    if type(template) is KVCache:
        return BlockKVCache(parts)
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
