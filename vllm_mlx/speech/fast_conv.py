"""Matmul formulations of the convolutions that MLX's CPU backend runs on a naive path.

On the CPU backend ``mx.conv_transpose1d`` and ``mx.conv1d`` with dilation > 1 take a
direct loop that is 30-80x slower than a matmul (measured: Kokoro's first upsampling,
(1, 128, 512) -> (1, 1280, 256), 2.7 s naive vs 0.03 s as below). Kokoro's decoder is
made of such layers, so on CPU they decide its speed. mlx-audio's ``ConvWeighted``
takes the convolution function as an argument (its public extension point); the
subclass here answers the slow cases with the formulations below and passes every
other case through unchanged. The right long-term home is MLX's CPU backend.
"""

from __future__ import annotations

import mlx.core as mx


def conv_transpose1d(x: mx.array, w: mx.array, stride: int = 1, padding: int = 0, groups: int = 1) -> mx.array:
    """``mx.conv_transpose1d`` for dilation 1 and groups 1 or depthwise: one matmul
    (or product) per input step, then an overlap-add of ceil(K/stride) shifted blocks.
    x: (N, L, C_in); w: (C_out, K, C_in/groups)."""
    n, length, c_in = x.shape
    c_out, k, _ = w.shape
    s = stride
    kp = -(-k // s) * s
    if kp != k:
        w = mx.pad(w, [(0, 0), (0, kp - k), (0, 0)])
    j = kp // s
    if groups == 1:
        z = (x.reshape(n * length, c_in) @ w.reshape(c_out * kp, c_in).T).reshape(n, length, c_out, j, s)
        z = z.transpose(0, 3, 1, 4, 2)  # (N, J, L, s, C_out)
    else:  # depthwise: each channel its own kernel
        z = x[:, :, None, :] * w[:, :, 0].T[None, None]  # (N, L, Kp, C)
        z = z.reshape(n, length, j, s, c_out).transpose(0, 2, 1, 3, 4)
    y = None
    for i in range(j):
        block = mx.pad(z[:, i], [(0, 0), (i, j - 1 - i), (0, 0), (0, 0)])
        y = block if y is None else y + block
    y = y.reshape(n, (length + j - 1) * s, c_out)
    out_len = (length - 1) * s + k - 2 * padding
    return y[:, padding:padding + out_len]


def dilated_conv1d(x: mx.array, w: mx.array, padding: int = 0, dilation: int = 1) -> mx.array:
    """``mx.conv1d`` for stride 1, groups 1, any dilation: one matmul per kernel tap."""
    _, k, _ = w.shape
    x = mx.pad(x, [(0, 0), (padding, padding), (0, 0)])
    out_len = x.shape[1] - dilation * (k - 1)
    y = None
    for i in range(k):
        part = x[:, i * dilation:i * dilation + out_len] @ w[:, i].T
        y = part if y is None else y + part
    return y


def fast_conv(conv, x: mx.array, w: mx.array, *, stride: int = 1, padding: int = 0, dilation: int = 1,
              groups: int = 1) -> mx.array:
    if conv is mx.conv_transpose1d and dilation == 1 and (groups == 1 or groups == x.shape[-1] == w.shape[0]):
        return conv_transpose1d(x, w, stride, padding, groups)
    if conv is mx.conv1d and dilation > 1 and stride == 1 and groups == 1:
        return dilated_conv1d(x, w, padding, dilation)
    return conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)


def use_fast_convs(model) -> int:
    """Give every mlx-audio ``ConvWeighted`` in ``model`` the fast convolutions; returns how many."""
    import mlx.nn as nn
    from mlx_audio.tts.models.kokoro.istftnet import ConvWeighted

    class FastConvWeighted(ConvWeighted):
        def __call__(self, x, conv):
            return super().__call__(x, lambda x, w, **kw: fast_conv(conv, x, w, **kw))

    count = 0

    def visit(value):
        nonlocal count
        if isinstance(value, ConvWeighted):
            # the same object, weights and all, answering with the fast convolutions
            value.__class__ = FastConvWeighted
            count += 1
        if isinstance(value, nn.Module):
            for child in value.values():
                visit(child)
        elif isinstance(value, (list, tuple)):
            for child in value:
                visit(child)
        elif isinstance(value, dict):
            for child in value.values():
                visit(child)

    visit(model)
    return count
