"""The matmul convolutions used for Kokoro on CPU equal MLX's own."""

from __future__ import annotations

import mlx.core as mx
import pytest

from vllm_mlx.speech.fast_conv import fast_conv


@pytest.mark.parametrize("length,c_in,c_out,k,stride,padding", [
    (16, 8, 6, 20, 10, 5), (33, 6, 4, 12, 6, 3), (9, 5, 3, 7, 3, 2), (12, 4, 4, 3, 1, 1)])
def test_conv_transpose1d(length, c_in, c_out, k, stride, padding):
    mx.random.seed(0)
    x, w = mx.random.normal((2, length, c_in)), mx.random.normal((c_out, k, c_in))
    want = mx.conv_transpose1d(x, w, stride=stride, padding=padding)
    got = fast_conv(mx.conv_transpose1d, x, w, stride=stride, padding=padding)
    assert got.shape == want.shape and mx.allclose(got, want, atol=1e-4).item()


def test_depthwise_conv_transpose1d():
    mx.random.seed(1)
    x, w = mx.random.normal((1, 15, 6)), mx.random.normal((6, 3, 1))
    want = mx.conv_transpose1d(x, w, stride=2, padding=1, groups=6)
    got = fast_conv(mx.conv_transpose1d, x, w, stride=2, padding=1, groups=6)
    assert got.shape == want.shape and mx.allclose(got, want, atol=1e-4).item()


@pytest.mark.parametrize("k,dilation", [(3, 3), (7, 5), (11, 2)])
def test_dilated_conv1d(k, dilation):
    mx.random.seed(2)
    x, w = mx.random.normal((2, 40, 5)), mx.random.normal((4, k, 5))
    padding = (k * dilation - dilation) // 2
    want = mx.conv1d(x, w, padding=padding, dilation=dilation)
    got = fast_conv(mx.conv1d, x, w, padding=padding, dilation=dilation)
    assert got.shape == want.shape and mx.allclose(got, want, atol=1e-4).item()
