"""Whisper's encoder block in several turns (see ``speech.turns``).

One encoder block attends over all 1,500 frames of a 30 s window: on a CPU that is tens to
hundreds of milliseconds, longer than an LLM decode step, so as a single turn it would hold
the chat streams of the same server up. While another engine is busy, the block runs as
the same arithmetic in row chunks: the query/key/value projections in one turn, then per
chunk of query rows the attention, output projection and MLP (all row-wise) in one turn
each. Alone, the block runs whole (mlx-audio's own code)."""

from __future__ import annotations

from typing import Any, Callable

import mlx.core as mx
import mlx.nn as nn

WORK_PER_TURN = 1 << 24  # query rows x keys x width per turn: ~70 MFLOP of attention, about an LLM decode step


def split_encoder_block(block: Any, turn: Callable, x: mx.array, xa=None, mask=None, kv_cache=None):
    """``ResidualAttentionBlock.__call__`` for an encoder block (self-attention only), in turns."""
    if xa is not None or mask is not None or kv_cache is not None or block.cross_attn is not None:
        with turn():  # not an encoder block's call: whole, in one turn
            out = type(block).__mro__[1].__call__(block, x, xa, mask, kv_cache)
            mx.eval(out[0])
        return out
    attn = block.attn
    n_ctx, width = x.shape[1], x.shape[2]
    rows = max(16, WORK_PER_TURN // max(n_ctx * width, 1))
    with turn():
        h = block.attn_ln(x)
        k, v = attn.key(h), attn.value(h)
        q = attn.query(h)
        mx.eval(q, k, v)
    pieces = []
    for start in range(0, n_ctx, rows):
        with turn():
            wv, _ = attn.qkv_attention(q[:, start:start + rows], k, v)
            y = x[:, start:start + rows] + attn.out(wv)
            y = y + block.mlp2(nn.gelu(block.mlp1(block.mlp_ln(y))))
            mx.eval(y)
        pieces.append(y)
    return mx.concatenate(pieces, axis=1), ((k, v), None), None
