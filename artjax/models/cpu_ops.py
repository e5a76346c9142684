"""Custom-VJP kernels for XLA's CPU backend, whose convolution kernel gradient and max-pool
select-and-scatter are slow (BENCHMARKS.md), and the convolution layer that uses them.

- Convolution: one gather of patches + one matmul. Its kernel gradient is one matmul with the saved
  patches; its input gradient is either the same patches + matmul on dy (flipped kernel) or XLA's
  transposed convolution (`_conv_input_grad` says which, and why).
- Depthwise convolution: a sum of shifted views (XLA differentiates it well).
- Max-pooling: XLA's reduce_window forward, whose gradient is a fused select of each window's first
  maximum (the same result as XLA's select-and-scatter, ties included).
Each equals XLA's native op forward and backward (tests/test_models.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from artjax.models import layers


def _strided_windows(x, kh, kw, stride):
    """The kh*kw strided views of padded NHWC `x` that a VALID window op combines."""
    _, h, w, _ = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    return [
        x[:, i : i + (ho - 1) * stride + 1 : stride, j : j + (wo - 1) * stride + 1 : stride, :]
        for i in range(kh)
        for j in range(kw)
    ]


def _patches(x, kh, kw, stride, padding):
    """(N, Ho, Wo, kh*kw*C) patches of NHWC `x`, in the (i, j, c) order of a flattened HWIO
    kernel."""
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    if kh == kw == 1:
        return x[:, ::stride, ::stride, :]
    n, h, w, c = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    # One gather with constant indices: XLA's CPU code writes it in one pass, where stacked kh*kw
    # strided views are materialized one by one and then copied (BENCHMARKS.md).
    rows = np.arange(ho)[:, None] * stride + np.arange(kh)  # (Ho, kh)
    cols = np.arange(wo)[:, None] * stride + np.arange(kw)  # (Wo, kw)
    patches = x.at[:, rows[:, None, :, None], cols[None, :, None, :], :].get(
        mode="promise_in_bounds"
    )
    return patches.reshape(n, ho, wo, kh * kw * c)


def _conv_input_grad(dy, kernel, stride, padding, x_shape):
    """The input gradient of a convolution. At stride 1 it is itself a stride-1 convolution of dy
    with the spatially flipped, in/out-transposed kernel ("full" padding), which can run as patches
    + one matmul like the forward pass: for 1x1 layers that is one matmul, and for ResNet50's 3x3
    layers (as many output as input channels) it is at least as fast as XLA's transposed
    convolution. Where a layer widens (more output channels), dy's patches are larger than the
    forward's and XLA's transposed convolution is faster, so it is used there and for strided
    layers (the measurements: BENCHMARKS.md)."""
    kh, kw, cin, cout = kernel.shape
    full_padding = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip((kh, kw), padding))
    if stride == 1 and (kh * kw == 1 or cout <= cin) and min(min(p) for p in full_padding) >= 0:
        flipped = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
        patches = _patches(dy, kh, kw, 1, full_padding)
        return jnp.einsum("nhwk,ko->nhwo", patches, flipped.reshape(-1, flipped.shape[-1]))
    conv = lambda x: layers.conv2d(x, kernel, stride, padding)
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
    # convolution of dy (`_conv_input_grad`), faster than multiplying dy into patch space and
    # scattering it back.
    patches, kernel, x_shape = residuals
    # fastest layout here
    dkernel = patches.reshape(-1, patches.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])
    dkernel = dkernel.reshape(kernel.shape)
    return _conv_input_grad(dy, kernel, stride, padding, x_shape), dkernel


_conv_patches.defvjp(_conv_patches_fwd, _conv_patches_bwd)


def conv2d(x, kernel, stride: int, padding):
    """NHWC x HWIO convolution with explicit ((top, bottom), (left, right)) padding."""
    return _conv_patches(x, kernel, stride, tuple(tuple(p) for p in padding))


def depthwise_conv2d(x, kernel, stride: int, padding):
    """NHWC depthwise convolution; kernel (kh, kw, 1, C) as Flax's grouped nn.Conv stores it."""
    kh, kw = kernel.shape[:2]
    views = _strided_windows(jnp.pad(x, ((0, 0), *padding, (0, 0))), kh, kw, stride)
    out = views[0] * kernel[0, 0, 0]
    for idx, v in enumerate(views[1:], start=1):
        out = out + v * kernel[idx // kw, idx % kw, 0]
    return out


def _pool_views(x, window: int, stride: int, padding: int):
    """The window*window strided views of NHWC `x` (padded with -inf) whose elementwise max is the
    pool."""
    x = jnp.pad(
        x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=-jnp.inf
    )
    return _strided_windows(x, window, window, stride)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_select_grad(x, window, stride, padding):
    # reduce_window, not a max of views: XLA does not duplicate it into each consumer, where a max
    # of views was recomputed inside every one of the next convolution's kh*kw patch slices.
    return jax.lax.reduce_window(
        x,
        -jnp.inf,
        jax.lax.max,
        (1, window, window, 1),
        (1, stride, stride, 1),
        ((0, 0), (padding, padding), (padding, padding), (0, 0)),
    )


def _max_pool_select_grad_fwd(x, window, stride, padding):
    y = _max_pool_select_grad(x, window, stride, padding)
    return y, (x, y)


def _max_pool_select_grad_bwd(window, stride, padding, residuals, dy):
    # Each window's gradient goes to its first maximum (row-major order), as XLA's
    # select-and-scatter does, but as elementwise selects that XLA fuses (its CPU select-and-scatter
    # is several times slower).
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
    """The first-maximum gradient of a k x k, stride-k pool (no padding) in two fused passes: the
    index of each window's first maximum at the pooled size, then one select over x's shape.
    (Scattering k*k views back, as for overlapping windows, took XLA several passes over x's
    shape.)"""
    n, h, w, c = x.shape
    ho, wo = y.shape[1:3]
    blocks = x[:, : ho * k, : wo * k].reshape(n, ho, k, wo, k, c)
    # the index array is a quarter of x's size or less
    index_dtype = np.int8 if k * k < 128 else np.int32
    first = jnp.full(y.shape, k * k, index_dtype)
    for t in reversed(range(k * k)):
        first = jnp.where(blocks[:, :, t // k, :, t % k, :] == y, index_dtype(t), first)
    position = (np.arange(k)[:, None] * k + np.arange(k)).astype(index_dtype)[
        None, None, :, None, :, None
    ]
    grad = jnp.where(
        position == first[:, :, None, :, None, :],
        dy[:, :, None, :, None, :],
        jnp.zeros((), dy.dtype),
    )
    return jnp.pad(
        grad.reshape(n, ho * k, wo * k, c), ((0, 0), (0, h - ho * k), (0, w - wo * k), (0, 0))
    )


_max_pool_select_grad.defvjp(_max_pool_select_grad_fwd, _max_pool_select_grad_bwd)


def max_pool(x, window: int, stride: int, padding: int):
    """Max-pooling with `padding` pixels of -inf on every side."""
    return _max_pool_select_grad(x, window, stride, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_4d_grad(x, window, stride, padding):
    return _max_pool_select_grad(x, window, stride, padding)


def _max_pool_4d_grad_fwd(x, window, stride, padding):
    y = _max_pool_4d_grad(x, window, stride, padding)
    return y, (x, y)


def _max_pool_4d_grad_bwd(window, stride, padding, residuals, dy):
    # The first-maximum gradient of `_max_pool_select_grad` with no array of more than 4
    # dimensions in an elementwise op: TFLite's converter takes no such op (its EQUAL and SELECT
    # broadcast up to 4 or 5). Each window offset's strided view of x is compared with y.
    x, y = residuals
    if window != stride or padding:
        return _max_pool_select_grad_bwd(window, stride, padding, residuals, dy)
    n, h, w, c = x.shape
    ho, wo = y.shape[1:3]
    k = window
    taken = jnp.zeros(y.shape, bool)
    grads = []
    for i in range(k):
        for j in range(k):
            # lax.slice: jnp's strided indexing lowers to a gather here
            last = (n, i + (ho - 1) * k + 1, j + (wo - 1) * k + 1, c)
            view = jax.lax.slice(x, (0, i, j, 0), last, (1, k, k, 1))
            first = (view == y) & ~taken
            grads.append(jnp.where(first, dy, jnp.zeros_like(dy)))
            taken = taken | first
    grad = jnp.stack(grads, axis=-1).reshape(n, ho, wo, c, k, k)
    grad = jnp.transpose(grad, (0, 1, 4, 2, 5, 3)).reshape(n, ho * k, wo * k, c)
    return (jnp.pad(grad, ((0, 0), (0, h - ho * k), (0, w - wo * k), (0, 0))),)


_max_pool_4d_grad.defvjp(_max_pool_4d_grad_fwd, _max_pool_4d_grad_bwd)


def max_pool_4d_grad(x, window: int, stride: int, padding: int):
    """`max_pool` whose gradient (the same values) has no elementwise op on more than 4
    dimensions: for TFLite."""
    return _max_pool_4d_grad(x, window, stride, padding)


class PatchesConv(layers.Conv):
    """`layers.Conv` (same parameters) computed with the kernels above."""

    def convolve(self, x, kernel, padding):
        op = depthwise_conv2d if self.depthwise else conv2d
        return op(x, kernel, self.strides, padding)
