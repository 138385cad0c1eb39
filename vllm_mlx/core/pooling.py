"""Embeddings from a decoder LLM: run mlx-lm's transformer body (no LM head) and pool
its final hidden states into one vector per input.

mlx-lm has no embedding API, but its models split into an outer ``Model`` (LM
head) and an inner ``model`` that returns the normed hidden states; the inner
one is all a Qwen3-Embedding-style model needs. Inputs of a batch are padded
on the right: under the causal mask a real token never attends to a pad, so
each row equals what that input gives alone, and pooling reads only its real
positions.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache

from ..plugins.interfaces import EmbeddingModel

POOLING = ("last", "mean", "cls")


class DecoderEmbedder(EmbeddingModel):
    """``EmbeddingModel`` over an mlx-lm model: ``pooling`` is ``last`` (the last
    token; Qwen3-Embedding, e5-mistral, gte-Qwen2), ``mean`` or ``cls`` (the first).

    An input longer than ``chunk_tokens`` runs on its own, a chunk at a time
    through a KV cache, so attention never holds more than chunk x length scores.
    """

    def __init__(self, model: Any, dimensions: int, pooling: str = "last",
                 matryoshka: bool | list[int] = False, chunk_tokens: int = 512, pad_id: int = 0):
        if pooling not in POOLING:
            raise ValueError(f"pooling {pooling!r} is not one of {', '.join(POOLING)}")
        self.model = model  # the outer mlx-lm Model: its ``layers`` size the KV cache
        self.body = model.model
        self.dimensions = dimensions
        self.pooling = pooling
        self.matryoshka = matryoshka
        self.chunk_tokens = chunk_tokens
        self.pad_id = pad_id

    def embed(self, batch: list[list[int]]) -> mx.array:
        long = [k for k, ids in enumerate(batch) if len(ids) > self.chunk_tokens]
        if not long:
            return self._embed_padded(batch)
        rows = [self._embed_chunked(ids) if k in long else None for k, ids in enumerate(batch)]
        short = [k for k, row in enumerate(rows) if row is None]
        if short:
            for k, row in zip(short, self._embed_padded([batch[k] for k in short])):
                rows[k] = row
        return mx.stack([row.astype(mx.float32) for row in rows])

    def _embed_padded(self, batch: list[list[int]]) -> mx.array:
        lengths = [len(ids) for ids in batch]
        width = max(lengths)
        tokens = mx.array([ids + [self.pad_id] * (width - len(ids)) for ids in batch], dtype=mx.int32)
        hidden = self.body(tokens)  # (B, L, H)
        lens = mx.array(lengths)
        if self.pooling == "last":
            return mx.take_along_axis(hidden, (lens - 1)[:, None, None], axis=1)[:, 0, :]
        if self.pooling == "cls":
            return hidden[:, 0, :]
        mask = (mx.arange(width)[None, :] < lens[:, None]).astype(mx.float32)[..., None]
        return (hidden.astype(mx.float32) * mask).sum(axis=1) / lens[:, None].astype(mx.float32)

    def _embed_chunked(self, ids: list[int]) -> mx.array:
        cache = make_prompt_cache(self.model)
        total = None
        first = last = None
        for start in range(0, len(ids), self.chunk_tokens):
            hidden = self.body(mx.array([ids[start:start + self.chunk_tokens]], dtype=mx.int32), cache=cache)[0]
            if first is None:
                first = hidden[0]
            last = hidden[-1]
            if self.pooling == "mean":
                part = hidden.astype(mx.float32).sum(axis=0)
                total = part if total is None else total + part
            mx.eval(last, first, total if total is not None else last, [c.state for c in cache])
        if self.pooling == "last":
            return last
        if self.pooling == "cls":
            return first
        return total / len(ids)
