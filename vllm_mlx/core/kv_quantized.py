"""Quantized KV caches that work inside mlx-lm's BatchGenerator.

mlx-lm has a quantized KV cache for one sequence (``QuantizedKVCache``) but no
batched one: BatchGenerator merges per-request caches with ``merge`` and keeps
the batch in a left-padded ``BatchKVCache``, which holds plain arrays. This is
the batched twin, storing keys and values as ``mx.quantize`` triples (packed
weights, scales, biases). Models pick quantized attention by the cache's
``bits`` attribute, so nothing else changes.
"""

from __future__ import annotations

import mlx.core as mx
from mlx.utils import tree_map, tree_reduce
from mlx_lm.models.base import create_causal_mask
from mlx_lm.models.cache import QuantizedKVCache, _BaseCache, dynamic_roll


class PagedQuantizedKVCache(QuantizedKVCache):
    """mlx-lm's single-sequence quantized cache, made mergeable into a batch."""

    @classmethod
    def merge(cls, caches):
        return BatchQuantizedKVCache.merge(caches)


def _zeros_like_quant(q, length: int):
    return tuple(mx.zeros((*x.shape[:2], length, x.shape[3]), x.dtype) for x in q)


class BatchQuantizedKVCache(_BaseCache):
    step = 256

    def __init__(self, left_padding: list[int], group_size: int = 64, bits: int = 8):
        self.keys = None  # (packed, scales, biases), each (B, H, L, ...)
        self.values = None
        self.group_size = group_size
        self.bits = bits
        self.left_padding = mx.array(left_padding)
        self.offset = mx.array([-p for p in left_padding])
        self._idx = 0
        self._right_padding = None

    # -- attention -------------------------------------------------------------
    def _quantize(self, x):
        return mx.quantize(x, group_size=self.group_size, bits=self.bits)

    def update_and_fetch(self, keys, values):
        prev, n = self._idx, keys.shape[2]
        qk, qv = self._quantize(keys), self._quantize(values)
        if self.keys is None or prev + n > self.keys[0].shape[2]:
            grow = (self.step + n - 1) // self.step * self.step
            if self.keys is None:
                self.keys, self.values = _zeros_like_quant(qk, grow), _zeros_like_quant(qv, grow)
            else:
                self.keys, self.values = tree_map(
                    lambda x: mx.concatenate([x[..., :prev, :], mx.zeros((*x.shape[:2], grow, x.shape[3]), x.dtype)], axis=2),
                    (self.keys, self.values),
                )
        for dst, src in zip(self.keys + self.values, qk + qv):
            dst[..., prev:prev + n, :] = src
        self._idx += n
        self.offset = self.offset + n
        return self.keys_and_values()

    def keys_and_values(self):
        return tree_map(lambda x: x[..., : self._idx, :], (self.keys, self.values))

    def make_mask(self, N: int, return_array: bool = False, **kwargs):
        return create_causal_mask(N, offset=self._idx, left_padding=self.left_padding, **kwargs)

    # -- batch bookkeeping (mirrors mlx-lm's BatchKVCache) ---------------------
    def prepare(self, *, left_padding=None, lengths=None, right_padding=None):
        if left_padding is not None:
            if self.keys is not None:
                raise ValueError("Left padding can only be added to an empty cache")
            left_padding = mx.array(left_padding)
            self.left_padding += left_padding
            self.offset = self.offset - left_padding
        if right_padding is not None and max(right_padding) > 0:
            self._right_padding = mx.array(right_padding)

    def finalize(self):
        if self._right_padding is not None:
            pad = self._right_padding
            self.keys, self.values = tree_map(
                lambda x: dynamic_roll(x, pad[:, None], axis=2), (self.keys, self.values)
            )
            self.offset = self.offset - pad
            self.left_padding += pad
            self._right_padding = None

    def filter(self, batch_indices):
        if self.keys is not None:
            self.keys, self.values = tree_map(lambda x: x[batch_indices], (self.keys, self.values))
        self.offset = self.offset[batch_indices]
        self.left_padding = self.left_padding[batch_indices]
        shift = min(self.left_padding.tolist())
        if shift > 0:
            if self.keys is not None:
                self.keys, self.values = tree_map(lambda x: x[..., shift:, :], (self.keys, self.values))
            self._idx -= shift
            self.left_padding -= shift

    def extend(self, other):
        if self.keys is None and other.keys is None:
            self.left_padding = mx.concatenate([self.left_padding, other.left_padding])
            self.offset = mx.concatenate([self.offset, other.offset])
            return
        idx = max(self._idx, other._idx)
        ref = self if self.keys is not None else other

        def aligned(c):
            kv = (c.keys, c.values)
            if c.keys is None:
                b = c.offset.shape[0]
                kv = tree_map(lambda x: mx.zeros((b, x.shape[1], 0, x.shape[3]), x.dtype), (ref.keys, ref.values))
            kv = tree_map(lambda x: x[..., : c._idx, :], kv)
            left = idx - c._idx
            if left:
                kv = tree_map(lambda x: mx.pad(x, [(0, 0), (0, 0), (left, 0), (0, 0)]), kv)
            return kv, c.offset, c.left_padding + left

        (ka, oa, la), (kb, ob, lb) = aligned(self), aligned(other)
        self.keys, self.values = tree_map(lambda a, b: mx.concatenate([a, b]), ka, kb)
        self.offset = mx.concatenate([oa, ob])
        self.left_padding = mx.concatenate([la, lb])
        self._idx = idx

    def extract(self, idx):
        mx.eval(self.left_padding)
        pad = self.left_padding.tolist()[idx]
        cache = PagedQuantizedKVCache(self.group_size, self.bits)
        cache.keys, cache.values = tree_map(
            lambda x: mx.contiguous(x[idx:idx + 1, :, pad:self._idx]), (self.keys, self.values)
        )
        cache.offset = self._idx - pad
        return cache

    @classmethod
    def merge(cls, caches):
        first = caches[0]
        lengths = [c.offset for c in caches]
        longest = max(lengths)
        padding = [longest - n for n in lengths]
        cache = cls(padding, first.group_size, first.bits)
        if longest == 0:
            return cache
        ref = next(c for c in caches if c.keys is not None)
        b = len(caches)

        def stack(parts):
            return mx.concatenate(parts, axis=0)

        rows_k, rows_v = [], []
        for p, c in zip(padding, caches):
            if c.keys is None:
                rows_k.append(_zeros_like_quant(ref.keys, longest))
                rows_v.append(_zeros_like_quant(ref.values, longest))
                continue
            kv = tree_map(lambda x: x[..., : c.offset, :], (c.keys, c.values))
            if p:
                kv = tree_map(lambda x: mx.pad(x, [(0, 0), (0, 0), (p, 0), (0, 0)]), kv)
            rows_k.append(kv[0])
            rows_v.append(kv[1])
        cache.keys = tuple(stack([r[i] for r in rows_k]) for i in range(3))
        cache.values = tuple(stack([r[i] for r in rows_v]) for i in range(3))
        cache.offset = cache.offset + longest
        cache._idx = longest
        assert cache.keys[0].shape[0] == b
        return cache

    # -- misc --------------------------------------------------------------------
    @property
    def state(self):
        return self.keys, self.values, self.offset, self.left_padding, self._idx

    @state.setter
    def state(self, v):
        self.keys, self.values, self.offset, self.left_padding, self._idx = v

    def is_trimmable(self):
        return True

    def trim(self, n):
        n = min(self._idx, n)
        self._idx -= n
        self.offset = self.offset - n
        return n

    def size(self):
        return self._idx

    def empty(self):
        return self.keys is None

    @property
    def nbytes(self):
        if self.keys is None:
            return 0
        return tree_reduce(lambda a, x: a + x.nbytes, (self.keys, self.values), 0)
