"""Built-in prefix-cache policies."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..interfaces import CachePolicy


class LRUPolicy(CachePolicy):
    """Keep everything; evict the least recently used first."""

    name = "lru"


class NoCachePolicy(CachePolicy):
    """Never keep finished prompts (prefix sharing off)."""

    name = "none"

    def admit(self, num_tokens: int, hits: int) -> bool:
        return False


@hookimpl
def register_cache_policies():
    return [LRUPolicy, NoCachePolicy]
