"""``--prefix-cache-dir``: cached KV blocks that survive a restart.

A block is written to its own safetensors file (named by its hash) when it is
evicted from memory and, for the blocks still in memory, at shutdown. At start
the folder is indexed, not loaded: a block is read when a request's prefix
reaches it. Before a block is used it is verified: same model fingerprint and
block size, its hash recomputed from its parent's hash and its tokens, and a
SHA-256 of its arrays. A file that fails any check is skipped with a warning
(and never loaded again this run); it cannot hand a request wrong KV.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from .kv_blocks import Block, BlockPool
from .prefix_cache import chain_hash

log = logging.getLogger("vllm_mlx.prefix_store")


def _digest(leaves: list[mx.array]) -> str:
    h = hashlib.sha256()
    for x in leaves:
        h.update(memoryview(mx.view(x, mx.uint8)).tobytes())
    return h.hexdigest()


class PrefixStore:
    def __init__(self, folder: str | Path, fingerprint: str, block_size: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fingerprint = fingerprint
        self.block_size = block_size
        self.index = {bytes.fromhex(p.stem): p for p in self.folder.glob("*.safetensors")
                      if len(p.stem) == 32 and _is_hex(p.stem)}
        self.loaded = self.rejected = self.written = 0
        if self.index:
            log.info("prefix cache folder %s: %d stored blocks", self.folder, len(self.index))

    # -- writing ------------------------------------------------------------
    def save(self, block: Block) -> None:
        if block.on_disk or block.block_hash in self.index or len(block.tokens) != self.block_size:
            return  # partial tail blocks are not kept across restarts
        flat = tree_flatten(block.data)
        arrays = {name or "0": x for name, x in flat}
        meta = {
            "fingerprint": self.fingerprint,
            "block_size": str(self.block_size),
            "parent": (block.parent or b"").hex(),
            "tokens": json.dumps(block.tokens),
            "layout": json.dumps([name for name, _ in flat]),
            "sha256": _digest([x for _, x in flat]),
        }
        path = self.folder / f"{block.block_hash.hex()}.safetensors"
        tmp = path.with_suffix(".tmp.safetensors")
        try:
            mx.save_safetensors(str(tmp), arrays, metadata=meta)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not write prefix cache block %s: %s", path.name, exc)
            return
        block.on_disk = True
        self.index[block.block_hash] = path
        self.written += 1

    def save_all(self, blocks: list[Block]) -> None:
        for block in blocks:
            self.save(block)

    # -- reading ------------------------------------------------------------
    def load_chain(self, hashes: list[bytes], pool: BlockPool) -> list[Block]:
        """Read the stored blocks that continue a cached prefix, in order, into ``pool``."""
        out: list[Block] = []
        for h in hashes:
            path = self.index.get(h)
            block = self._read(h, path) if path is not None else None
            if block is None or not pool.insert(block):
                break
            out.append(block)
        return out

    def _read(self, h: bytes, path: Path) -> Block | None:
        try:
            arrays, meta = mx.load(str(path), return_metadata=True)
            if meta.get("fingerprint") != self.fingerprint or meta.get("block_size") != str(self.block_size):
                raise ValueError("written for another model or block size")
            parent = bytes.fromhex(meta["parent"])
            tokens = tuple(json.loads(meta["tokens"]))
            if len(tokens) != self.block_size or chain_hash(parent, tokens) != h:
                raise ValueError("hash does not match its tokens")
            names = json.loads(meta["layout"])
            leaves = [arrays[name or "0"] for name in names]
            if _digest(leaves) != meta["sha256"]:
                raise ValueError("checksum mismatch")
        except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped, never used
            log.warning("skipping prefix cache file %s: %s", path.name, exc)
            self.index.pop(h, None)
            self.rejected += 1
            return None
        data = tree_unflatten(list(zip(names, leaves)))
        self.loaded += 1
        return Block(h, parent, tokens, _as_layers(data), on_disk=True)


def _as_layers(data) -> list:
    # tree_unflatten turns the top-level list of layers into a list again.
    return list(data)


def _is_hex(s: str) -> bool:
    try:
        bytes.fromhex(s)
        return True
    except ValueError:
        return False
