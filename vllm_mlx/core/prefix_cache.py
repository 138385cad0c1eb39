"""Automatic prefix caching on top of the block pool.

Design (how attention reads the blocks): MLX has no paged-attention kernel on
every backend, and mlx-lm's BatchGenerator keeps each running batch in one
contiguous, left-padded cache per layer. So blocks are the unit of *sharing and
accounting*, not of attention:

* at admission, the cached blocks of a request's longest cached prefix are
  concatenated into a fresh single-sequence cache (one copy, lazily evaluated)
  that BatchGenerator merges into the batch; only the rest of the prompt is
  prefilled;
* when a prompt has been prefilled, and when a sequence finishes (or is
  preempted), its new full blocks are copied out of the batch cache into the
  pool, so the next request with that prefix finds them.

Decode steps never touch the pool, so a batch that shares nothing runs exactly
as it would without the cache (the cost is a copy per full block written).
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass
from typing import Any, Callable

import mlx.core as mx
from mlx.utils import tree_map

from .kv_blocks import Block, BlockPool
from .kv_layers import arrays, cut_blocks, rebuild


def salt_root(salt: str | None) -> bytes:
    return hashlib.blake2b((salt or "").encode(), digest_size=16).digest()


def extend_hashes(hashes: list[bytes], tokens: list[int], block_size: int, salt: str | None) -> list[bytes]:
    """``hashes`` (of the first full blocks of ``tokens``) extended to all its full blocks."""
    out = list(hashes)
    parent = out[-1] if out else salt_root(salt)
    for start in range(len(out) * block_size, len(tokens) - block_size + 1, block_size):
        parent = chain_hash(parent, tuple(tokens[start:start + block_size]))
        out.append(parent)
    return out


@dataclass
class Hit:
    tokens: int  # prompt tokens whose KV comes from the cache
    caches: list[Any]  # per-layer caches to hand to BatchGenerator


class PrefixCache:
    def __init__(self, pool: BlockPool, make_cache: Callable[[], list[Any]], enabled: bool):
        self.pool = pool
        self.make_cache = make_cache
        self.enabled = enabled
        self.block_size = pool.block_size
        self.queries = 0  # prompt tokens looked up
        self.hits = 0  # of which found in the cache
        self.disk = None  # set by persistence, if any

    def cached_prefix(self, hashes: list[bytes]) -> list[Block]:
        if not self.enabled:
            return []
        blocks = self.pool.match(hashes)
        if self.disk is not None and len(blocks) < len(hashes):
            blocks += self.disk.load_chain(hashes[len(blocks):], self.pool)
        return blocks

    def partial(self, tokens: list[int], blocks: list[Block], salt: str | None) -> tuple[Block | None, int]:
        """A cached block continuing ``blocks`` whose first tokens match what follows them
        in ``tokens``: its KV for those tokens is valid here too (attention is causal), so
        a prompt reuses its exact common prefix, not only whole blocks."""
        if not self.enabled:
            return None, 0
        start = len(blocks) * self.block_size
        parent = blocks[-1].block_hash if blocks else salt_root(salt)
        block, n = self.pool.partial(parent, tokens[start:start + self.block_size])
        if not blocks and n < self.block_size // 2:
            # A few shared tokens at the very start (a chat template's "<|im_start|>user\n") are cheaper
            # to prefill with the rest of the prompt than to copy out of the pool layer by layer: on the
            # H100 that copy was ~10% of the engine's host time at 128 streams of unrelated prompts.
            return None, 0
        return block, n

    def build(self, tokens: list[int], blocks: list[Block], tail: Block | None = None, tail_len: int = 0) -> Hit:
        """A fresh per-layer cache holding ``blocks``' KV (and the first ``tail_len``
        tokens of ``tail``), ready for the rest of ``tokens``."""
        caches = self.make_cache()
        if self.enabled:
            self.queries += len(tokens)
        if not blocks and not tail_len:
            return Hit(0, caches)
        n = len(blocks) * self.block_size + tail_len

        def parts(i: int) -> list:
            out = [b.data[i] for b in blocks]
            if tail_len:
                out.append(tree_map(lambda x: x[..., :tail_len, :], tail.data[i]))
            return out

        caches = [rebuild(c, parts(i)) for i, c in enumerate(caches)]
        if n >= len(tokens):  # the whole prompt is cached: recompute its last token
            for c in caches:
                c.trim(n - len(tokens) + 1)
            n = len(tokens) - 1
        self.hits += n
        return Hit(n, caches)

    def store(self, tokens: list[int], hashes: list[bytes], caches: list[Any], salt: str | None) -> list[bytes]:
        """Copy what the pool lacks of a sequence's cache (``tokens`` are the tokens it
        holds) into the pool: its full blocks, and its last, partial block (found only
        by the token-by-token match of ``partial``). Returns the extended hashes."""
        hashes = extend_hashes(hashes, tokens, self.block_size, salt)
        if not self.enabled:
            return hashes
        bs, pool = self.block_size, self.pool
        known = 0
        while known < len(hashes) and hashes[known] in pool.cached:
            known += 1
        chain = [pool.cached[h] for h in hashes[:known]]
        pool.acquire(chain)  # inserting the new blocks must not evict their parents
        per_layer = [cut_blocks(c, known * bs, len(tokens), bs) for c in caches]
        fresh = []
        for j, start in enumerate(range(known * bs, len(tokens), bs)):
            i = start // bs
            parent = hashes[i - 1] if i else salt_root(salt)
            toks = tuple(tokens[start:start + bs])
            h = hashes[i] if i < len(hashes) else chain_hash(parent, toks)
            if h in pool.cached:  # the same partial tail, stored before
                pool.touch([pool.cached[h]])
                break
            block = Block(h, parent, toks, [layer[j] for layer in per_layer])
            if not pool.insert(block):
                break  # no room: the rest of the chain would be unreachable anyway
            pool.acquire([block])
            fresh.append(block)
        if fresh:
            mx.async_eval(arrays([b.data for b in fresh]))
        pool.release(chain + fresh)
        pool.touch(chain + fresh)
        return hashes


def chain_hash(parent: bytes, tokens: tuple[int, ...]) -> bytes:
    """A block's hash: its parent's hash and its tokens."""
    h = hashlib.blake2b(parent, digest_size=16)
    h.update(array("q", tokens).tobytes())
    return h.digest()
