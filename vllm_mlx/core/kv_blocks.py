"""The KV block pool: fixed-size blocks of KV memory, a memory budget, and the
hash table that makes full blocks shareable between requests.

Accounting is in blocks of ``block_size`` tokens. Two things use them:

* **working blocks**: the KV of running sequences (the batch cache that
  attention reads), ``ceil(tokens / block_size)`` per sequence, reserved as a
  sequence grows;
* **cached blocks**: full blocks kept for reuse, each identified by a hash
  chained over its tokens and its parent block's hash (the first block's parent
  is the request's ``cache_salt``), so one hash names one whole prefix.

``working + cached <= capacity`` always holds. A cached block is referenced
(``ref``) while a request is reading it into its batch cache; unreferenced
cached blocks stay findable until room is needed, then the least recently used
go first. The data of a block is one entry per model layer: that layer's keys
and values for the block's tokens (a pytree of arrays, sequence on axis 2).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass(eq=False, slots=True)
class Block:
    block_hash: bytes
    parent: bytes | None
    tokens: tuple[int, ...]
    data: list[Any]
    ref: int = 0
    on_disk: bool = False
    meta: dict = field(default_factory=dict)


class BlockPool:
    """Capacity, working reservations and the cache of full blocks (one engine thread)."""

    def __init__(self, capacity: int, block_size: int, on_evict=None):
        if capacity < 1:
            raise ValueError("the KV cache budget holds no block; raise --kv-cache-memory")
        self.capacity = capacity
        self.block_size = block_size
        self.working = 0
        self.cached: OrderedDict[bytes, Block] = OrderedDict()  # least recently used first
        self.children: dict[bytes | None, dict[bytes, Block]] = {}  # parent hash -> cached blocks after it
        self.on_evict = on_evict
        self.evictions = 0
        self.pinned = 0  # cached blocks with ref > 0

    # -- accounting ----------------------------------------------------------
    @property
    def free(self) -> int:
        """Blocks neither reserved nor cached."""
        return self.capacity - self.working - len(self.cached)

    def evictable(self) -> int:
        return len(self.cached) - self.pinned

    def can_reserve(self, n: int) -> bool:
        return n <= self.free + self.evictable()

    def reserve(self, n: int) -> bool:
        """Take ``n`` working blocks, evicting cached ones if needed."""
        if n <= 0:
            return True
        if n > self.free and not self._evict(n - self.free):
            return False
        self.working += n
        return True

    def unreserve(self, n: int) -> None:
        self.working = max(0, self.working - n)

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    # -- the cache -----------------------------------------------------------
    def match(self, hashes: Iterable[bytes]) -> list[Block]:
        """The cached blocks of the longest cached prefix of ``hashes``."""
        found = []
        for h in hashes:
            block = self.cached.get(h)
            if block is None:
                break
            found.append(block)
        return found

    def partial(self, parent: bytes | None, tokens: list[int]) -> tuple[Block | None, int]:
        """The cached block after ``parent`` sharing the longest run of leading
        tokens with ``tokens``, and that run's length (0 when none does)."""
        best, best_n = None, 0
        for block in self.children.get(parent, {}).values():
            n = 0
            for a, b in zip(block.tokens, tokens):
                if a != b:
                    break
                n += 1
            if n > best_n:
                best, best_n = block, n
        return best, best_n

    def touch(self, blocks: list[Block]) -> None:
        # Most recent last; a prefix's first block is touched last so that, of a
        # chain, the tail is evicted before the head it depends on.
        for block in reversed(blocks):
            self.cached.move_to_end(block.block_hash)

    def acquire(self, blocks: list[Block]) -> None:
        for b in blocks:
            if b.ref == 0:
                self.pinned += 1
            b.ref += 1
        self.touch(blocks)

    def release(self, blocks: list[Block]) -> None:
        for b in blocks:
            if b.ref == 1:
                self.pinned -= 1
            b.ref = max(0, b.ref - 1)

    def insert(self, block: Block) -> bool:
        """Cache a new full block; False when no room can be made."""
        if block.block_hash in self.cached:
            self.cached.move_to_end(block.block_hash)
            return True
        if self.free < 1 and not self._evict(1):
            return False
        self.cached[block.block_hash] = block
        self.children.setdefault(block.parent, {})[block.block_hash] = block
        return True

    def _evict(self, n: int) -> bool:
        if n > self.evictable():
            return False
        victims = []
        for block in self.cached.values():
            if block.ref == 0:
                victims.append(block)
                if len(victims) == n:
                    break
        for block in victims:
            del self.cached[block.block_hash]
            siblings = self.children.get(block.parent)
            if siblings is not None:
                siblings.pop(block.block_hash, None)
                if not siblings:
                    del self.children[block.parent]
            self.evictions += 1
            if self.on_evict is not None:
                self.on_evict(block)
        return True

    def clear(self) -> list[Block]:
        blocks = list(self.cached.values())
        self.cached.clear()
        self.children.clear()
        self.pinned = 0
        return blocks
