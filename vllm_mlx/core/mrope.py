"""Per-row mRoPE positions for Qwen-VL models in a shared batch.

Qwen-VL gives image tokens 2-D (height, width) rotary positions, so after an
image, a sequence's next position is its cache length plus a per-sequence
``rope_delta`` (negative: an image of h x w tokens spans max(h, w) positions).
mlx-vlm keeps that delta as state of the language model, one value for the
whole batch; mlx-lm's batch caches know nothing of it. Here the delta travels
with each sequence's cache: ``MRopeKVCache`` holds it for one sequence, and
``BatchMRopeKVCache`` keeps one per row through every batch operation
(merge, filter, extend, extract), so the language-model adapter can compute
each row's positions as ``offset + delta``. Text-only sequences have delta 0.
"""

from __future__ import annotations

import mlx.core as mx
from mlx_lm.models.cache import BatchKVCache, KVCache


class MRopeKVCache(KVCache):
    def __init__(self, rope_delta: int = 0):
        super().__init__()
        self.rope_delta = rope_delta

    @classmethod
    def merge(cls, caches):
        batch = BatchKVCache.merge(caches)
        out = BatchMRopeKVCache.__new__(BatchMRopeKVCache)
        out.__dict__.update(batch.__dict__)
        out.deltas = mx.array([getattr(c, "rope_delta", 0) for c in caches], dtype=mx.int32)
        return out


class BatchMRopeKVCache(BatchKVCache):
    def __init__(self, left_padding: list[int], deltas: list[int] | None = None):
        super().__init__(left_padding)
        self.deltas = mx.array(deltas or [0] * len(left_padding), dtype=mx.int32)

    def filter(self, batch_indices):
        super().filter(batch_indices)
        self.deltas = self.deltas[mx.array(batch_indices) if isinstance(batch_indices, list) else batch_indices]

    def extend(self, other):
        super().extend(other)
        self.deltas = mx.concatenate([self.deltas, getattr(other, "deltas", mx.zeros((0,), mx.int32))])

    def extract(self, idx):
        plain = super().extract(idx)
        out = MRopeKVCache(int(self.deltas[idx].item()))
        out.keys, out.values, out.offset = plain.keys, plain.values, plain.offset
        return out

    def positions(self, length: int) -> mx.array:
        """Rotary positions of the next ``length`` tokens of every row: (3, B, length)."""
        start = self.offset + self.deltas
        pos = start[:, None] + mx.arange(length)[None]
        return mx.broadcast_to(pos[None], (3, *pos.shape))


def single_positions(cache: KVCache, length: int) -> mx.array:
    start = cache.offset + getattr(cache, "rope_delta", 0)
    pos = mx.arange(start, start + length)[None]
    return mx.broadcast_to(pos[None], (3, 1, length))
