"""Flax modules: the study's small CNN, a bottleneck ResNet in its Keras and torchvision variants, and
EfficientNet-Lite0..4 (the TF reference's layout, as ported to PyTorch by `efficientnet-lite-pytorch`).

Every submodule has an explicit `name=` so ported weights map through explicit key tables. Padding is
explicit everywhere (Flax's 'SAME' pads stride-2 convolutions asymmetrically; both reference frameworks
pad symmetrically). Parameters stay float32; `dtype` sets the compute dtype (e.g. bfloat16).

Convolutions and max-pooling have two implementations with the same parameters (`conv_impl`):
"xla" (lax.conv_general_dilated / reduce_window) and "patches", for XLA's CPU backend, whose kernel
gradient (conv) and select-and-scatter (pool) are slow: a convolution is one gather of patches + one
matmul, its kernel gradient one matmul with the saved patches and its input gradient either the same
patches + matmul on dy or XLA's transposed convolution (`_conv_input_grad` says which, and why);
max-pooling is XLA's reduce_window, whose gradient is a fused select of each window's first maximum.
Depthwise convolutions under "patches" are sums of shifted views. "auto" takes "patches" on CPU and
"xla" on GPU/TPU (BENCHMARKS.md).

The ImageNet backbones (ResNet, EfficientNet-Lite) share what transfer learning needs:
- `sow("intermediates", ...)` after the stem and every stage, so parity tests can point at the stage
  that diverges;
- `return_features=True` gives the pooled features the classifier `head` sees (the last activations'
  global average, plus those of the `pooled_stages`), and
  `input_is_features=True` runs only dropout + `head` on such features (frozen-backbone runs train the
  head on features computed once);
- `frozen_norms`: paths ("stage1_block1/bn1") of BatchNorm layers that stay in inference mode while
  training (frozen layers, as Keras treats a non-trainable BatchNormalization).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

MODEL_NAMES = ("cnn", "resnet", "efficientnet_lite")
CONV_IMPLS = ("auto", "xla", "patches")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


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


def _patches(x, kh, kw, stride, padding):
    """(N, Ho, Wo, kh*kw*C) patches of NHWC `x`, in the (i, j, c) order of a flattened HWIO kernel."""
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    if kh == kw == 1:
        return x[:, ::stride, ::stride, :]
    n, h, w, c = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    # One gather with constant indices: XLA's CPU code writes it in one pass, ~3x (C=32) to ~6x (C=3)
    # faster than stacking kh*kw strided views, which it materializes one by one and then copies.
    rows = np.arange(ho)[:, None] * stride + np.arange(kh)  # (Ho, kh)
    cols = np.arange(wo)[:, None] * stride + np.arange(kw)  # (Wo, kw)
    patches = x.at[:, rows[:, None, :, None], cols[None, :, None, :], :].get(mode="promise_in_bounds")
    return patches.reshape(n, ho, wo, kh * kw * c)


def _xla_conv(x, kernel, stride, padding):
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_DIMENSIONS)


def _conv_input_grad(dy, kernel, stride, padding, x_shape):
    """The input gradient of a convolution. At stride 1 it is itself a stride-1 convolution of dy with
    the spatially flipped, in/out-transposed kernel ("full" padding), which can run as patches + one
    matmul like the forward pass: for 1x1 layers that is one matmul, and for ResNet50's 3x3 layers
    (as many output as input channels) it beat XLA's transposed convolution with stacked patches (5.5
    vs 5.1 img/s) and ties with gathered ones (5.29 vs 5.25). Where a layer widens (more output
    channels), dy's patches are larger than the forward's and XLA's transposed convolution measured
    faster (the CNN: 37-40 vs 29 img/s), so it is used there and for strided layers."""
    kh, kw, cin, cout = kernel.shape
    full_padding = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip((kh, kw), padding))
    if stride == 1 and (kh * kw == 1 or cout <= cin) and min(min(p) for p in full_padding) >= 0:
        flipped = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
        patches = _patches(dy, kh, kw, 1, full_padding)
        return jnp.einsum("nhwk,ko->nhwo", patches, flipped.reshape(-1, flipped.shape[-1]))
    conv = lambda x: _xla_conv(x, kernel, stride, padding)
    return jax.linear_transpose(conv, jax.ShapeDtypeStruct(x_shape, dy.dtype))(dy)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_patches(x, kernel, stride, padding):
    return _conv_patches_fwd(x, kernel, stride, padding)[0]


def _conv_patches_fwd(x, kernel, stride, padding):
    kh, kw, cin, cout = kernel.shape
    patches = _patches(x, kh, kw, stride, padding)
    y = jnp.einsum("nhwk,ko->nhwo", patches, kernel.reshape(kh * kw * cin, cout))
    return y, (patches, kernel, x.shape)


def _conv_patches_bwd(stride, padding, residuals, dy):
    # The kernel gradient reuses the forward pass's patches (one matmul); the input gradient is a
    # convolution of dy (`_conv_input_grad`), ~2x faster than multiplying dy into patch space and
    # scattering it back.
    patches, kernel, x_shape = residuals
    dkernel = patches.reshape(-1, patches.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])  # fastest layout here
    dkernel = dkernel.reshape(kernel.shape)
    return _conv_input_grad(dy, kernel, stride, padding, x_shape), dkernel


_conv_patches.defvjp(_conv_patches_fwd, _conv_patches_bwd)


def conv2d(x, kernel, stride: int, padding, impl: str):
    """NHWC x HWIO convolution with explicit ((top, bottom), (left, right)) padding."""
    padding = tuple(tuple(p) for p in padding)
    if impl == "xla":
        return _xla_conv(x, kernel, stride, padding)
    return _conv_patches(x, kernel, stride, padding)


def depthwise_conv2d(x, kernel, stride: int, padding, impl: str):
    """NHWC depthwise convolution; kernel (kh, kw, 1, C) as Flax's grouped nn.Conv stores it."""
    if impl == "xla":
        return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                            dimension_numbers=_DIMENSIONS, feature_group_count=x.shape[-1])
    kh, kw = kernel.shape[:2]
    views = _strided_windows(jnp.pad(x, ((0, 0), *padding, (0, 0))), kh, kw, stride)
    out = views[0] * kernel[0, 0, 0]
    for idx, v in enumerate(views[1:], start=1):
        out = out + v * kernel[idx // kw, idx % kw, 0]
    return out


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding (the extra pixel goes after), which the EfficientNet weights expect."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pool_views(x, window: int, stride: int, padding: int):
    """The window*window strided views of NHWC `x` (padded with -inf) whose elementwise max is the pool."""
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=-jnp.inf)
    return _strided_windows(x, window, window, stride)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_select_grad(x, window, stride, padding):
    # reduce_window, not a max of views: XLA does not duplicate it into each consumer, where a max of
    # views was recomputed inside every one of the next convolution's kh*kw patch slices.
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1),
                                 ((0, 0), (padding, padding), (padding, padding), (0, 0)))


def _max_pool_select_grad_fwd(x, window, stride, padding):
    y = _max_pool_select_grad(x, window, stride, padding)
    return y, (x, y)


def _max_pool_select_grad_bwd(window, stride, padding, residuals, dy):
    # Each window's gradient goes to its first maximum (row-major order), as XLA's select-and-scatter
    # does, but as elementwise selects that XLA fuses (its CPU select-and-scatter is ~8x slower).
    x, y = residuals
    if window == stride and not padding:
        return (_tiled_max_pool_grad(x, y, dy, window),)
    views, scatter = jax.vjp(lambda x: _pool_views(x, window, stride, padding), x)
    taken = jnp.zeros(y.shape, bool)
    grads = []
    for v in views:
        first = (v == y) & ~taken
        grads.append(jnp.where(first, dy, jnp.zeros_like(dy)))
        taken = taken | first
    return scatter(grads)


def _tiled_max_pool_grad(x, y, dy, k):
    """The first-maximum gradient of a k x k, stride-k pool (no padding) in two fused passes: the index
    of each window's first maximum at the pooled size, then one select over x's shape. (Scattering
    k*k views back, as for overlapping windows, took XLA several passes over x's shape.)"""
    n, h, w, c = x.shape
    ho, wo = y.shape[1:3]
    blocks = x[:, :ho * k, :wo * k].reshape(n, ho, k, wo, k, c)
    index_dtype = np.int8 if k * k < 128 else np.int32  # the index array is a quarter of x's size or less
    first = jnp.full(y.shape, k * k, index_dtype)
    for t in reversed(range(k * k)):
        first = jnp.where(blocks[:, :, t // k, :, t % k, :] == y, index_dtype(t), first)
    position = (np.arange(k)[:, None] * k + np.arange(k)).astype(index_dtype)[None, None, :, None, :, None]
    grad = jnp.where(position == first[:, :, None, :, None, :], dy[:, :, None, :, None, :], jnp.zeros((), dy.dtype))
    return jnp.pad(grad.reshape(n, ho * k, wo * k, c), ((0, 0), (0, h - ho * k), (0, w - wo * k), (0, 0)))


_max_pool_select_grad.defvjp(_max_pool_select_grad_fwd, _max_pool_select_grad_bwd)


def max_pool(x, window: int, stride: int, padding: int, impl: str):
    if impl == "xla":
        return nn.max_pool(x, (window, window), (stride, stride), [(padding, padding)] * 2)
    return _max_pool_select_grad(x, window, stride, padding)


class Conv(nn.Module):
    """Drop-in for nn.Conv (same `kernel` HWIO and `bias` parameters and initializers). `padding`: pixels
    on every side, or "same" for TensorFlow's SAME; `depthwise`: one filter per channel."""

    features: int
    kernel_size: int
    strides: int = 1
    padding: int | str = 0
    use_bias: bool = True
    depthwise: bool = False
    dtype: Any = jnp.float32
    impl: str = "xla"

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        if self.padding == "same":
            padding = [same_padding(x.shape[1], k, self.strides), same_padding(x.shape[2], k, self.strides)]
        else:
            padding = [(self.padding, self.padding)] * 2
        in_features = 1 if self.depthwise else x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, in_features, self.features))
        op = depthwise_conv2d if self.depthwise else conv2d
        y = op(x.astype(self.dtype), kernel.astype(self.dtype), self.strides, padding, self.impl)
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
            x = nn.relu(max_pool(x, 2, 2, 0, self.conv_impl))  # = pool(relu(x)), on 4x fewer values
        x = x.reshape(x.shape[0], -1)
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(x)
        x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


class Backbone(nn.Module):
    """An ImageNet backbone (`features`: images -> pooled features) under dropout + the dense `head`
    that transfer learning replaces. Subclasses define `features` and the fields used here."""

    @nn.compact
    def __call__(self, x, train: bool = False, *, return_features: bool = False, input_is_features: bool = False):
        if not input_is_features:
            x = self.features(x, train)
            if return_features:
                return x
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)


def pool_features(x, stages: dict, pooled_stages: Sequence[str]):
    """Global average of the last activations, followed by those of `pooled_stages` (mid-level texture
    statistics, which carry much of a painting's style)."""
    unknown = [name for name in pooled_stages if name not in stages]
    if unknown:
        raise ValueError(f"model.pooled_stages {unknown} are not among this model's stages {list(stages)}")
    return jnp.concatenate([jnp.mean(x, axis=(1, 2))] + [jnp.mean(stages[n], axis=(1, 2)) for n in pooled_stages], -1)


def batch_norm_factory(train: bool, frozen_norms: Sequence[str], momentum: float, epsilon: float, dtype,
                       axis_name: str | None):
    """norm(name, path): a BatchNorm in training mode unless `path` is frozen (inference mode)."""

    def norm(name: str, path: str):
        active = train and path not in frozen_norms
        return nn.BatchNorm(use_running_average=not active, momentum=momentum, epsilon=epsilon, dtype=dtype,
                            axis_name=axis_name if active else None, name=name)

    return norm


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
        norm = lambda name: self.norm(name, f"{self.name}/{name}")
        s1, s2 = (self.strides, 1) if keras else (1, self.strides)
        y = nn.relu(norm("bn1")(conv(self.filters, 1, s1, 0, "conv1")(x)))
        y = nn.relu(norm("bn2")(conv(self.filters, 3, s2, 1, "conv2")(y)))
        y = norm("bn3")(conv(4 * self.filters, 1, 1, 0, "conv3")(y))
        if self.project:
            x = norm("proj_bn")(conv(4 * self.filters, 1, self.strides, 0, "proj_conv")(x))
        return nn.relu(x + y)


class ResNet(Backbone):
    """Bottleneck ResNet; stage sizes (3, 4, 6, 3) make ResNet50. Names: stem `conv1`/`bn1`, blocks
    `stage{i}_block{j}` with `conv1..3`, `bn1..3`, `proj_conv`/`proj_bn`, classifier `head`."""

    num_classes: int
    stage_sizes: Sequence[int] = RESNET_DEPTHS[50]
    variant: str = "v1.5"
    width: int = 64
    bn_momentum: float = 0.9
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    axis_name: str | None = None  # set under pmap to synchronize BatchNorm statistics
    conv_impl: str = "xla"
    frozen_norms: tuple[str, ...] = ()
    pooled_stages: tuple[str, ...] = ()  # stage outputs pooled into the head's input besides the last

    def features(self, x, train: bool):
        if self.variant not in RESNET_VARIANTS:
            raise ValueError(f"ResNet variant {self.variant!r} is not one of {RESNET_VARIANTS}")
        keras = self.variant == "v1"
        norm = batch_norm_factory(train, self.frozen_norms, self.bn_momentum, 1.001e-5 if keras else 1e-5,
                                  self.dtype, self.axis_name)
        x = x.astype(self.dtype)
        x = Conv(self.width, 7, 2, 3, use_bias=keras, dtype=self.dtype, impl=self.conv_impl, name="conv1")(x)
        x = nn.relu(norm("bn1", "bn1")(x))
        x = max_pool(x, 3, 2, 1, self.conv_impl)
        stages = {"stem": x}
        for i, blocks in enumerate(self.stage_sizes):
            for j in range(blocks):
                x = Bottleneck(self.width * 2**i, strides=2 if (j == 0 and i > 0) else 1, project=j == 0,
                               variant=self.variant, norm=norm, dtype=self.dtype, conv_impl=self.conv_impl,
                               name=f"stage{i + 1}_block{j + 1}")(x)
            stages[f"stage{i + 1}"] = x
        for name, value in stages.items():
            self.sow("intermediates", name, value)
        return pool_features(x, stages, self.pooled_stages)


# EfficientNet-Lite (TF's efficientnet/lite builder): no squeeze-excitation, ReLU6, stem and head not
# scaled. Per stage: (repeats, kernel, stride, expand ratio, input filters, output filters).
LITE_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
               (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
# version -> (width coefficient, depth coefficient, resolution, dropout rate)
LITE_VERSIONS = {0: (1.0, 1.0, 224, 0.2), 1: (1.0, 1.1, 240, 0.2), 2: (1.1, 1.2, 260, 0.3),
                 3: (1.2, 1.4, 280, 0.3), 4: (1.4, 1.8, 300, 0.3)}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TF's rounding of scaled filter counts to a multiple of 8, never more than 10% down."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def lite_blocks(version: int) -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expand ratio, input filters, output filters) of every MBConv block, in order."""
    width, depth, _, _ = LITE_VERSIONS[version]
    blocks = []
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(LITE_STAGES):
        fixed = i in (0, len(LITE_STAGES) - 1)  # first and last stages keep their depth
        repeats = repeats if fixed else int(math.ceil(depth * repeats))
        cin = 32 if i == 0 else round_filters(cin, width)
        cout = round_filters(cout, width)
        for r in range(repeats):
            blocks.append((kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout))
    return blocks


def lite_stage_ends(version: int) -> list[int]:
    """1-based index of the last block of each stage (where the intermediates are sown)."""
    ends, total = [], 0
    width, depth, _, _ = LITE_VERSIONS[version]
    for i, (repeats, *_rest) in enumerate(LITE_STAGES):
        total += repeats if i in (0, len(LITE_STAGES) - 1) else int(math.ceil(depth * repeats))
        ends.append(total)
    return ends


class MBConv(nn.Module):
    kernel: int
    strides: int
    expand: int
    in_filters: int
    out_filters: int
    drop_rate: float
    norm: Any
    dtype: Any
    conv_impl: str

    @nn.compact
    def __call__(self, x, train: bool):
        conv = lambda f, k, s, name, depthwise=False: Conv(f, k, s, "same", use_bias=False, depthwise=depthwise,
                                                           dtype=self.dtype, impl=self.conv_impl, name=name)
        norm = lambda name: self.norm(name, f"{self.name}/{name}")
        y = x
        hidden = self.in_filters * self.expand
        if self.expand != 1:
            y = nn.relu6(norm("expand_bn")(conv(hidden, 1, 1, "expand_conv")(y)))
        y = nn.relu6(norm("depthwise_bn")(conv(hidden, self.kernel, self.strides, "depthwise_conv", True)(y)))
        y = norm("project_bn")(conv(self.out_filters, 1, 1, "project_conv")(y))
        if self.strides == 1 and self.in_filters == self.out_filters:
            if train and self.drop_rate:  # drop connect (stochastic depth), per example
                keep = 1.0 - self.drop_rate
                mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (y.shape[0], 1, 1, 1))
                y = jnp.where(mask, y / keep, 0).astype(y.dtype)
            y = y + x
        return y


class EfficientNetLite(Backbone):
    """EfficientNet-Lite0..4. Names: `stem_conv`/`stem_bn`, `block{k}` (k = 1..16 for Lite0) with
    `expand_conv`/`expand_bn` (absent in block1), `depthwise_conv`/`depthwise_bn`,
    `project_conv`/`project_bn`, then `top_conv`/`top_bn` and the classifier `head`."""

    num_classes: int
    version: int = 0
    dropout_rate: float = 0.2
    drop_connect_rate: float = 0.2
    bn_momentum: float = 0.99
    dtype: Any = jnp.float32
    axis_name: str | None = None
    conv_impl: str = "xla"
    frozen_norms: tuple[str, ...] = ()
    pooled_stages: tuple[str, ...] = ()

    def features(self, x, train: bool):
        if self.version not in LITE_VERSIONS:
            raise ValueError(f"EfficientNet-Lite version {self.version} is not one of {tuple(LITE_VERSIONS)}")
        norm = batch_norm_factory(train, self.frozen_norms, self.bn_momentum, 1e-3, self.dtype, self.axis_name)
        conv = lambda f, k, s, name: Conv(f, k, s, "same", use_bias=False, dtype=self.dtype,
                                          impl=self.conv_impl, name=name)
        x = nn.relu6(norm("stem_bn", "stem_bn")(conv(32, 3, 2, "stem_conv")(x.astype(self.dtype))))
        stages = {"stem": x}
        blocks, ends = lite_blocks(self.version), lite_stage_ends(self.version)
        for idx, (kernel, strides, expand, cin, cout) in enumerate(blocks):
            x = MBConv(kernel, strides, expand, cin, cout, self.drop_connect_rate * idx / len(blocks), norm,
                       self.dtype, self.conv_impl, name=f"block{idx + 1}")(x, train)
            if idx + 1 in ends:
                stages[f"stage{ends.index(idx + 1) + 1}"] = x
        for name, value in stages.items():
            self.sow("intermediates", name, value)
        x = nn.relu6(norm("top_bn", "top_bn")(conv(1280, 1, 1, "top_conv")(x)))
        return pool_features(x, stages, self.pooled_stages)


def create_model(model_config, num_classes: int, axis_name: str | None = None,
                 frozen_norms: tuple[str, ...] = ()) -> nn.Module:
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
                      bn_momentum=model_config.bn_momentum, dropout_rate=model_config.dropout_rate,
                      dtype=dtype, axis_name=axis_name, conv_impl=impl, frozen_norms=tuple(frozen_norms),
                      pooled_stages=tuple(model_config.pooled_stages))
    if model_config.name == "efficientnet_lite":
        if model_config.lite_version not in LITE_VERSIONS:
            raise ValueError(f"model.lite_version {model_config.lite_version} is not one of {tuple(LITE_VERSIONS)}")
        return EfficientNetLite(num_classes, version=model_config.lite_version,
                                dropout_rate=model_config.dropout_rate,
                                drop_connect_rate=model_config.drop_connect_rate,
                                bn_momentum=model_config.bn_momentum, dtype=dtype, axis_name=axis_name,
                                conv_impl=impl, frozen_norms=tuple(frozen_norms),
                                pooled_stages=tuple(model_config.pooled_stages))
    raise ValueError(f"model.name {model_config.name!r} is not one of {MODEL_NAMES}")
