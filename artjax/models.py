"""Flax modules: the study's small CNN and a bottleneck ResNet in its Keras and torchvision variants.

Every submodule has an explicit `name=` so ported weights map through explicit key tables. Padding is
explicit everywhere (Flax's 'SAME' pads stride-2 convolutions asymmetrically; both reference frameworks
pad symmetrically). Parameters stay float32; `dtype` sets the compute dtype (e.g. bfloat16).

Convolutions and max-pooling have two implementations with the same parameters (`conv_impl`):
"xla" (lax.conv_general_dilated / reduce_window) and "patches" (strided slices + one matmul; a max over
strided slices), whose gradients are matmuls, pads and selects. XLA's CPU convolution and pooling
backward passes are slow, so "auto" takes "patches" on CPU and "xla" on GPU/TPU (BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

MODEL_NAMES = ("cnn", "resnet")
CONV_IMPLS = ("auto", "xla", "patches")


def resolve_conv_impl(impl: str) -> str:
    if impl not in CONV_IMPLS:
        raise ValueError(f"model.conv_impl {impl!r} is not one of {CONV_IMPLS}")
    if impl == "auto":
        return "patches" if jax.default_backend() == "cpu" else "xla"
    return impl


def _strided_windows(x, kh, kw, stride):
    """The kh*kw strided views of padded NHWC `x` that a VALID window op combines."""
    _, h, w, _ = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    return [x[:, i:i + (ho - 1) * stride + 1:stride, j:j + (wo - 1) * stride + 1:stride, :]
            for i in range(kh) for j in range(kw)]


def conv2d(x, kernel, stride: int, padding, impl: str):
    """NHWC x HWIO convolution with explicit ((top, bottom), (left, right)) padding."""
    if impl == "xla":
        return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    kh, kw, cin, cout = kernel.shape
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    patches = jnp.concatenate(_strided_windows(x, kh, kw, stride), axis=-1)  # (i, j, c) order = HWIO
    return jnp.einsum("nhwk,ko->nhwo", patches, kernel.reshape(kh * kw * cin, cout))


def max_pool(x, window: int, stride: int, padding: int, impl: str):
    if impl == "xla":
        return nn.max_pool(x, (window, window), (stride, stride), [(padding, padding)] * 2)
    if window == stride and not padding:  # non-overlapping windows: one reshape, one reduction
        n, h, w, c = x.shape
        ho, wo = h // stride, w // stride
        x = x[:, :ho * stride, :wo * stride].reshape(n, ho, stride, wo, stride, c)
        return x.max(axis=(2, 4))
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=-jnp.inf)
    views = _strided_windows(x, window, window, stride)
    out = views[0]
    for v in views[1:]:
        out = jnp.maximum(out, v)
    return out


class Conv(nn.Module):
    """Drop-in for nn.Conv (same `kernel` HWIO and `bias` parameters and initializers)."""

    features: int
    kernel_size: int
    strides: int = 1
    padding: int = 0
    use_bias: bool = True
    dtype: Any = jnp.float32
    impl: str = "xla"

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
        y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.strides,
                   [(self.padding, self.padding)] * 2, self.impl)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
        return y
RESNET_VARIANTS = ("v1", "v1.5")  # v1: Keras applications; v1.5: torchvision
RESNET_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class BaselineCNN(nn.Module):
    """Chollet's "very little data" convnet, as in the study: four 3x3 conv + ReLU + 2x2 max-pool
    stages (32, 64, 128, 128 filters, 'valid' padding), flatten, dropout, dense 512, dense classes."""

    num_classes: int
    filters: Sequence[int] = (32, 64, 128, 128)
    hidden: int = 512
    dropout_rate: float = 0.4
    dtype: Any = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        for i, f in enumerate(self.filters):
            if min(x.shape[1:3]) < 4:
                raise ValueError(f"BaselineCNN: input {x.shape[1:3]} is too small for {len(self.filters)} "
                                 "conv+pool stages; use a larger data.image_size (at least 46)")
            x = Conv(f, 3, dtype=self.dtype, impl=self.conv_impl, name=f"conv{i + 1}")(x)
            x = max_pool(nn.relu(x), 2, 2, 0, self.conv_impl)
        x = x.reshape(x.shape[0], -1)
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(x)
        x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


class Bottleneck(nn.Module):
    filters: int
    strides: int
    project: bool
    variant: str
    norm: Any
    dtype: Any
    conv_impl: str

    @nn.compact
    def __call__(self, x):
        keras = self.variant == "v1"  # stride in the first 1x1 conv, conv biases
        conv = lambda f, k, s, pad, name: Conv(f, k, s, pad, use_bias=keras, dtype=self.dtype,
                                               impl=self.conv_impl, name=name)
        s1, s2 = (self.strides, 1) if keras else (1, self.strides)
        y = nn.relu(self.norm(name="bn1")(conv(self.filters, 1, s1, 0, "conv1")(x)))
        y = nn.relu(self.norm(name="bn2")(conv(self.filters, 3, s2, 1, "conv2")(y)))
        y = self.norm(name="bn3")(conv(4 * self.filters, 1, 1, 0, "conv3")(y))
        if self.project:
            x = self.norm(name="proj_bn")(conv(4 * self.filters, 1, self.strides, 0, "proj_conv")(x))
        return nn.relu(x + y)


class ResNet(nn.Module):
    """Bottleneck ResNet; stage sizes (3, 4, 6, 3) make ResNet50. Names: stem `conv1`/`bn1`, blocks
    `stage{i}_block{j}` with `conv1..3`, `bn1..3`, `proj_conv`/`proj_bn`, classifier `head`."""

    num_classes: int
    stage_sizes: Sequence[int] = RESNET_DEPTHS[50]
    variant: str = "v1.5"
    width: int = 64
    bn_momentum: float = 0.9
    dtype: Any = jnp.float32
    axis_name: str | None = None  # set under pmap to synchronize BatchNorm statistics
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.variant not in RESNET_VARIANTS:
            raise ValueError(f"ResNet variant {self.variant!r} is not one of {RESNET_VARIANTS}")
        keras = self.variant == "v1"
        norm = lambda name: nn.BatchNorm(
            use_running_average=not train, momentum=self.bn_momentum,
            epsilon=1.001e-5 if keras else 1e-5, dtype=self.dtype,
            axis_name=self.axis_name if train else None, name=name)
        x = x.astype(self.dtype)
        x = Conv(self.width, 7, 2, 3, use_bias=keras, dtype=self.dtype, impl=self.conv_impl, name="conv1")(x)
        x = nn.relu(norm("bn1")(x))
        x = max_pool(x, 3, 2, 1, self.conv_impl)
        for i, blocks in enumerate(self.stage_sizes):
            for j in range(blocks):
                x = Bottleneck(self.width * 2**i, strides=2 if (j == 0 and i > 0) else 1, project=j == 0,
                               variant=self.variant, norm=norm, dtype=self.dtype, conv_impl=self.conv_impl,
                               name=f"stage{i + 1}_block{j + 1}")(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


def create_model(model_config, num_classes: int, axis_name: str | None = None) -> nn.Module:
    """The module a config names; `model_config.name` must be one of MODEL_NAMES."""
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(model_config.dtype)
    if dtype is None:
        raise ValueError(f"model.dtype {model_config.dtype!r} is not one of ('float32', 'bfloat16')")
    impl = resolve_conv_impl(model_config.conv_impl)
    if model_config.name == "cnn":
        return BaselineCNN(num_classes, dropout_rate=model_config.dropout_rate, dtype=dtype, conv_impl=impl)
    if model_config.name == "resnet":
        stage_sizes = tuple(model_config.stage_sizes) or RESNET_DEPTHS.get(model_config.depth)
        if stage_sizes is None:
            raise ValueError(f"model.depth {model_config.depth} is not one of {tuple(RESNET_DEPTHS)} "
                             "(or set model.stage_sizes)")
        return ResNet(num_classes, stage_sizes=stage_sizes,
                      variant=model_config.variant, width=model_config.width,
                      bn_momentum=model_config.bn_momentum, dtype=dtype, axis_name=axis_name,
                      conv_impl=impl)
    raise ValueError(f"model.name {model_config.name!r} is not one of {MODEL_NAMES}")
