"""The CPU convolution/pooling path equals XLA's, forward and backward; model-level equivalence."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from artjax import models
from artjax.models import cpu_ops, efficientnet_lite, layers, resnet
from artjax.models.backbone import batch_norm_factory


# Stride-1 input gradients of 1x1 or non-widening layers take the flipped-kernel patches path;
# widening layers, padding over k - 1 and strides take XLA's transposed convolution. Cover 1x1, even
# kernels, asymmetric ("SAME"-style) padding and every fallback.
@pytest.mark.parametrize(
    "k,stride,pad,cin,cout",
    [
        (3, 1, 0, 3, 8),
        (3, 2, 1, 4, 6),
        (1, 2, 0, 5, 7),
        (7, 2, 3, 3, 4),
        (3, 1, 1, 6, 6),
        (1, 1, 0, 5, 7),
        (2, 1, (0, 1), 4, 3),
        (3, 1, (1, 2), 5, 4),
        (3, 1, 1, 3, 4),
        (1, 1, 1, 3, 4),
    ],
)
def test_patches_conv_equals_xla_conv_and_its_gradients(k, stride, pad, cin, cout):
    rng = np.random.default_rng(k * 10 + stride)
    x = jnp.asarray(rng.normal(size=(2, 13, 12, cin)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.float32)
    pad = pad if isinstance(pad, tuple) else (pad, pad)
    assert_impls_agree(
        {"xla": layers.conv2d, "patches": cpu_ops.conv2d}, x, kernel, stride, [pad, pad[::-1]], rng
    )


def assert_impls_agree(ops, x, kernel, stride, padding, rng):
    """The "patches" and "xla" implementations in `ops`: equal outputs and input/kernel
    gradients."""
    fwd = {impl: op(x, kernel, stride, padding) for impl, op in ops.items()}
    np.testing.assert_allclose(fwd["patches"], fwd["xla"], rtol=1e-5, atol=1e-5)
    cotangent = jnp.asarray(rng.normal(size=fwd["xla"].shape), jnp.float32)
    grads = {
        impl: jax.grad(lambda a, b: jnp.sum(op(a, b, stride, padding) * cotangent), argnums=(0, 1))(
            x, kernel
        )
        for impl, op in ops.items()
    }
    for a, b in zip(grads["patches"], grads["xla"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (5, 2), (5, 1)])
def test_patches_depthwise_conv_equals_xla_and_its_gradients(k, stride):
    rng = np.random.default_rng(k + stride)
    x = jnp.asarray(rng.normal(size=(2, 13, 12, 6)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, 1, 6)), jnp.float32)
    padding = [layers.same_padding(13, k, stride), layers.same_padding(12, k, stride)]
    ops = {"xla": layers.depthwise_conv2d, "patches": cpu_ops.depthwise_conv2d}
    assert_impls_agree(ops, x, kernel, stride, padding, rng)


def test_same_padding_is_tensorflows():
    assert layers.same_padding(224, 3, 2) == (0, 1)  # the extra pixel goes after
    assert layers.same_padding(56, 5, 2) == (1, 2)
    assert layers.same_padding(14, 5, 1) == (2, 2)


@pytest.mark.parametrize(
    "window,stride,pad", [(2, 2, 0), (3, 3, 0), (12, 12, 0), (3, 2, 1), (3, 1, 1)]
)
def test_patches_max_pool_equals_xla_including_ties(window, stride, pad):
    """Equal outputs and gradients; after a ReLU many windows tie at 0 (and rounding makes ties
    elsewhere): both send a window's gradient to its first maximum only. Odd sizes leave rows and
    columns outside every window; a 12x12 window has more positions than an int8 index holds."""
    size = max(11, 2 * window + 1)
    x = np.random.default_rng(0).normal(size=(2, size, size - 1, 3)).astype(np.float32)
    x = jnp.asarray(np.maximum(np.round(x, 1), 0))
    pools = {
        "xla": layers.max_pool,
        "patches": cpu_ops.max_pool,
        "tflite": cpu_ops.max_pool_4d_grad,
    }
    fwd = {impl: pool(x, window, stride, pad) for impl, pool in pools.items()}
    np.testing.assert_array_equal(fwd["patches"], fwd["xla"])
    np.testing.assert_array_equal(fwd["tflite"], fwd["xla"])
    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=fwd["xla"].shape), jnp.float32)
    grads = {
        impl: jax.grad(lambda a: jnp.sum(pool(a, window, stride, pad) * cotangent))(x)
        for impl, pool in pools.items()
    }
    np.testing.assert_array_equal(grads["patches"], grads["xla"])
    np.testing.assert_array_equal(grads["tflite"], grads["xla"])


def test_the_platform_conv_runs_the_cpu_kernels_on_cpu_and_keeps_xlas_for_cuda():
    """An export for cpu and cuda holds both branches; on CPU it computes the CPU kernels' result
    (the XLA convolution only serves the cuda branch)."""
    from artjax import models

    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(2, 9, 9, 4)), jnp.float32)
    conv = models.PlatformConv(5, 3, 2, "same", name="conv")
    variables = conv.init(jax.random.PRNGKey(0), x)
    apply = jax.jit(lambda x: conv.apply(variables, x))
    both = jax.export.export(apply, platforms=("cpu", "cuda"))(x)
    cpu_only = jax.export.export(apply, platforms=("cpu",))(x)
    assert "stablehlo.convolution" in both.mlir_module()
    assert "stablehlo.convolution" not in cpu_only.mlir_module()  # slices, a gather, a matmul
    kernel, padding = variables["params"]["kernel"], [layers.same_padding(9, 3, 2)] * 2
    np.testing.assert_array_equal(both.call(x), cpu_ops.conv2d(x, kernel, 2, padding))
    np.testing.assert_allclose(both.call(x), layers.conv2d(x, kernel, 2, padding), atol=1e-5)


def test_patches_conv_in_bfloat16_matches_xla_within_bfloat16_rounding():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 12, 12, 8)), jnp.bfloat16)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 8, 16)) / 8, jnp.bfloat16)
    convs = {"xla": layers.conv2d, "patches": cpu_ops.conv2d}
    grads = {
        impl: jax.grad(
            lambda a, b: jnp.sum(conv(a, b, 1, [(1, 1)] * 2).astype(jnp.float32) ** 2),
            argnums=(0, 1),
        )(x, kernel)
        for impl, conv in convs.items()
    }
    for a, b in zip(grads["patches"], grads["xla"]):
        assert a.dtype == b.dtype == jnp.bfloat16
        np.testing.assert_allclose(
            np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=0.05, atol=0.5
        )


class TwoMBConv(nn.Module):
    """EfficientNet-Lite's blocks (expansion, 'same'-padded depthwise at stride 2 and 1, projection,
    residual) at a size whose gradient compiles quickly; the full model is checked against
    PyTorch."""

    impl: str

    @nn.compact
    def __call__(self, x):
        norm = batch_norm_factory(False, (), 0.99, 1e-3, jnp.float32, None)
        conv = models.kernels(self.impl).conv
        x = efficientnet_lite.MBConv(5, 2, 6, 3, 8, 0.0, norm, jnp.float32, conv, name="block1")(
            x, False
        )
        x = efficientnet_lite.MBConv(3, 1, 6, 8, 8, 0.0, norm, jnp.float32, conv, name="block2")(
            x, False
        )
        return jnp.mean(x, axis=(1, 2))


@pytest.mark.parametrize(
    "make",
    [
        lambda impl: models.BaselineCNN(4, dropout_rate=0.0, **models.kernels(impl)._asdict()),
        lambda impl: models.ResNet(
            4, stage_sizes=(1, 1), width=4, variant="v1", **models.kernels(impl)._asdict()
        ),
        lambda impl: models.ResNet(
            4, stage_sizes=(1, 1), width=4, variant="v1.5", **models.kernels(impl)._asdict()
        ),
        lambda impl: TwoMBConv(impl),
    ],
)
def test_models_give_the_same_logits_and_gradients_with_either_conv(make):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 48, 48, 3)), jnp.float32)
    variables = jax.jit(make("xla").init)(jax.random.PRNGKey(0), x)
    results = {}
    for impl in ("xla", "patches"):  # jitted, as training runs them (op by op compiles slowly)
        model = make(impl)
        loss = lambda p: jnp.sum(model.apply({**variables, "params": p}, x) ** 2)
        results[impl] = (
            jax.jit(model.apply)(variables, x),
            jax.jit(jax.grad(loss))(variables["params"]),
        )
    np.testing.assert_allclose(results["patches"][0], results["xla"][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(results["patches"][1]), jax.tree.leaves(results["xla"][1])):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_conv_impl_auto_is_patches_on_cpu_and_names_are_validated():
    assert models.kernels("auto") == models.kernels(
        "patches" if jax.default_backend() == "cpu" else "xla"
    )
    assert (
        models.kernels("patches").conv is cpu_ops.PatchesConv
        and models.kernels("xla").conv is layers.Conv
    )
    with pytest.raises(
        ValueError,
        match=r"conv_impl 'fast' is not one of "
        r"\('auto', 'xla', 'patches', 'by_platform', 'tflite'\)",
    ):
        models.kernels("fast")


def test_resnet_variants_place_the_stride_as_their_frameworks_do():
    x = jnp.zeros((1, 64, 64, 3))
    out = {}
    for variant in resnet.VARIANTS:
        model = models.ResNet(5, stage_sizes=(1, 1), width=4, variant=variant)
        variables = model.init(jax.random.PRNGKey(0), x)
        block = variables["params"]["stage2_block1"]
        assert ("bias" in block["conv1"]) == (variant == "v1")  # Keras convs carry biases
        _, inter = model.apply(variables, x, capture_intermediates=True)
        out[variant] = {
            k: v["__call__"][0].shape
            for k, v in inter["intermediates"]["stage2_block1"].items()
            if k.startswith("conv")
        }
    # stride 2 in conv1 vs conv2
    assert out["v1"]["conv1"][1] == 8 and out["v1.5"]["conv1"][1] == 16
    assert out["v1"]["conv2"][1] == out["v1.5"]["conv2"][1] == 8


def test_too_small_input_for_the_cnn_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        models.BaselineCNN(3).init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))


def test_gram_features_equal_a_numpy_reference():
    model = models.ResNet(5, stage_sizes=(1, 1), width=4, gram_stages=("stage1",))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
    variables = model.init(jax.random.PRNGKey(0), x)
    features, state = model.apply(variables, x, method=model.features, mutable=["intermediates"])
    stage = np.asarray(state["intermediates"]["stage1"][0], np.float64)  # [B, H, W, C]
    b, h, w, c = stage.shape
    expected = []
    for image in stage:
        flat = image.reshape(h * w, c)
        gram = flat.T @ flat / (h * w)
        upper = np.array([gram[i, j] for i in range(c) for j in range(i, c)])
        expected.append(np.sign(upper) * np.sqrt(np.abs(upper)))
    np.testing.assert_allclose(
        features[:, -c * (c + 1) // 2 :], np.stack(expected), rtol=1e-4, atol=1e-6
    )
    # the stage's global average is not among the features unless asked for
    without = models.ResNet(5, stage_sizes=(1, 1), width=4)
    last = without.apply(variables, x, method=without.features)
    np.testing.assert_allclose(features[:, : last.shape[-1]], last, rtol=1e-6)
