"""Convolution and pooling as the architectures use them, with XLA's native ops.

Padding is explicit everywhere (Flax's 'SAME' pads stride-2 convolutions asymmetrically; both
reference frameworks pad symmetrically). Parameters stay float32; `dtype` sets the compute dtype.
Architectures receive the convolution layer and the pooling function they use (`conv: ModuleDef`,
`pool`), so the CPU kernels of `cpu_ops` replace these without any other change.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def conv2d(x, kernel, stride: int, padding):
    """NHWC x HWIO convolution with explicit ((top, bottom), (left, right)) padding."""
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), padding, dimension_numbers=DIMENSIONS
    )


def depthwise_conv2d(x, kernel, stride: int, padding):
    """NHWC depthwise convolution; kernel (kh, kw, 1, C) as Flax's grouped nn.Conv stores it."""
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        padding,
        dimension_numbers=DIMENSIONS,
        feature_group_count=x.shape[-1],
    )


def max_pool(x, window: int, stride: int, padding: int):
    """Max-pooling with `padding` pixels of -inf on every side."""
    return nn.max_pool(x, (window, window), (stride, stride), [(padding, padding)] * 2)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding (the extra pixel goes after), which the EfficientNet weights
    expect."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv(nn.Module):
    """Drop-in for nn.Conv (same `kernel` HWIO and `bias` parameters and initializers). `padding`:
    pixels on every side, or "same" for TensorFlow's SAME; `depthwise`: one filter per channel.
    Subclasses change how it is computed by overriding `convolve`."""

    features: int
    kernel_size: int
    strides: int = 1
    padding: int | str = 0
    use_bias: bool = True
    depthwise: bool = False
    dtype: Any = jnp.float32

    def convolve(self, x, kernel, padding):
        op = depthwise_conv2d if self.depthwise else conv2d
        return op(x, kernel, self.strides, padding)

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        if self.padding == "same":
            padding = [
                same_padding(x.shape[1], k, self.strides),
                same_padding(x.shape[2], k, self.strides),
            ]
        else:
            padding = [(self.padding, self.padding)] * 2
        in_features = 1 if self.depthwise else x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (k, k, in_features, self.features)
        )
        y = self.convolve(x.astype(self.dtype), kernel.astype(self.dtype), padding)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
        return y
