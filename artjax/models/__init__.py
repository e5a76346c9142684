"""Flax models: the study's small CNN (`cnn`), a bottleneck ResNet (`resnet`) and EfficientNet-Lite
(`efficientnet_lite`), built by name from a config's `model` section (`create_model`).

Every submodule has an explicit `name=`, so ported weights map through explicit key tables
(`resnet.port_table`, `efficientnet_lite.port_table`; `porting` applies them). Convolutions and
max-pooling come in two implementations with the same parameters (`model.conv_impl`): XLA's native
ops (`layers`) and the custom-VJP kernels for XLA's CPU backend (`cpu_ops`); "auto" takes the CPU
kernels on CPU and XLA's ops on GPU/TPU when the program is traced, "by_platform" when it runs
(both branches are in the program: an exported model serves on either, `artjax.serving`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from artjax.models import concatenated, cpu_ops, efficientnet_lite, layers, resnet
from artjax.models.backbone import Backbone
from artjax.models.cnn import BaselineCNN
from artjax.models.efficientnet_lite import EfficientNetLite
from artjax.models.resnet import ResNet
from artjax.registry import Registry

__all__ = ["Backbone", "BaselineCNN", "EfficientNetLite", "ResNet", "create_model", "kernels"]


class Kernels(NamedTuple):
    conv: Any  # the convolution layer (a Module class with `layers.Conv`'s fields)
    pool: Callable  # max_pool(x, window, stride, padding)


XLA = Kernels(layers.Conv, layers.max_pool)
CPU = Kernels(cpu_ops.PatchesConv, cpu_ops.max_pool)


class PlatformConv(layers.Conv):
    """`layers.Conv` (same parameters) as the CPU kernels on CPU and XLA's convolution elsewhere,
    chosen by the platform the lowered program runs on (`jax.lax.platform_dependent`)."""

    def convolve(self, x, kernel, padding):
        return jax.lax.platform_dependent(
            x,
            kernel,
            cpu=lambda x, k: cpu_ops.PatchesConv.convolve(self, x, k, padding),
            default=lambda x, k: layers.Conv.convolve(self, x, k, padding),
        )


def platform_max_pool(x, window: int, stride: int, padding: int):
    return jax.lax.platform_dependent(
        x,
        cpu=lambda x: cpu_ops.max_pool(x, window, stride, padding),
        default=lambda x: layers.max_pool(x, window, stride, padding),
    )


CONV_IMPLS = Registry(
    "model.conv_impl",
    {
        "auto": lambda: CPU if jax.default_backend() == "cpu" else XLA,
        "xla": lambda: XLA,
        "patches": lambda: CPU,
        "by_platform": lambda: Kernels(PlatformConv, platform_max_pool),
        # what TFLite's converter takes: its own convolutions, and a max-pool gradient of
        # elementwise selects on 4-D arrays (it has no select-and-scatter)
        "tflite": lambda: Kernels(layers.Conv, cpu_ops.max_pool_4d_grad),
    },
)
DTYPES = Registry("model.dtype", {"float32": jnp.float32, "bfloat16": jnp.bfloat16})


def kernels(conv_impl: str) -> Kernels:
    """The convolution layer and pooling function that `model.conv_impl` names, for this backend."""
    return CONV_IMPLS[conv_impl]()


def _cnn(m, num_classes, dtype, ops, axis_name, frozen_norms):
    del axis_name, frozen_norms  # no BatchNorm
    if m.era_head or m.head_hidden or m.era_style_weight:
        raise ValueError(
            "model.era_head, model.head_hidden, model.era_style_weight: they sit on a backbone's "
            "pooled features; "
            "model.name 'cnn' has none (use 'resnet' or 'efficientnet_lite')"
        )
    return BaselineCNN(
        num_classes, dropout_rate=m.dropout_rate, dtype=dtype, conv=ops.conv, pool=ops.pool
    )


def _backbone_fields(m, dtype, ops, axis_name, frozen_norms) -> dict:
    """The fields every Backbone takes from the model config."""
    if m.era_style_weight and not m.era_head:
        raise ValueError(
            "model.era_style_weight weighs the era head's estimate: set model.era_head"
        )
    return dict(
        bn_momentum=m.bn_momentum,
        dropout_rate=m.dropout_rate,
        dtype=dtype,
        axis_name=axis_name,
        conv=ops.conv,
        frozen_norms=tuple(frozen_norms),
        pooled_stages=tuple(m.pooled_stages),
        gram_stages=tuple(m.gram_stages),
        head_hidden=m.head_hidden,
        era=m.era_head,
        era_bins=m.era_bins,
        era_bin_start=m.era_bin_start,
        era_bin_years=m.era_bin_years,
        era_style_weight=m.era_style_weight,
        style_years=tuple(float(y) for y in m.style_years),
    )


def _resnet(m, num_classes, dtype, ops, axis_name, frozen_norms):
    return ResNet(
        num_classes,
        stage_sizes=tuple(m.stage_sizes) or resnet.DEPTHS[m.depth],
        variant=m.variant,
        width=m.width,
        pool=ops.pool,
        **_backbone_fields(m, dtype, ops, axis_name, frozen_norms),
    )


def _efficientnet_lite(m, num_classes, dtype, ops, axis_name, frozen_norms):
    efficientnet_lite.VERSIONS[m.lite_version]  # validated here, before the first trace
    return EfficientNetLite(
        num_classes,
        version=m.lite_version,
        drop_connect_rate=m.drop_connect_rate,
        **_backbone_fields(m, dtype, ops, axis_name, frozen_norms),
    )


def _concatenated_lite(m, num_classes, dtype, ops, axis_name, frozen_norms):
    for v in m.lite_versions:
        efficientnet_lite.VERSIONS[v]  # validated here, before the first trace
    return concatenated.ConcatenatedLite(
        num_classes,
        versions=tuple(m.lite_versions),
        drop_connect_rate=m.drop_connect_rate,
        **_backbone_fields(m, dtype, ops, axis_name, frozen_norms),
    )


MODELS = Registry(
    "model.name",
    {
        "cnn": _cnn,
        "resnet": _resnet,
        "efficientnet_lite": _efficientnet_lite,
        # EfficientNet-Lite backbones of `model.lite_versions` side by side under one head
        "efficientnet_lite_concat": _concatenated_lite,
    },
)


def create_model(
    model_config, num_classes: int, axis_name: str | None = None, frozen_norms: tuple[str, ...] = ()
):
    """The module that `model_config.name` names. `axis_name` synchronizes BatchNorm statistics
    under pmap; `frozen_norms` are BatchNorm layers kept in inference mode (artjax.transfer)."""
    build = MODELS[model_config.name]
    dtype, ops = DTYPES[model_config.dtype], kernels(model_config.conv_impl)
    return build(model_config, num_classes, dtype, ops, axis_name, frozen_norms)


def abstract_variables(model, image_size: int) -> dict:
    """The shapes and dtypes of `model`'s variables for square RGB inputs, without computing
    them."""
    return jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, image_size, image_size, 3)))
    )


def per_view(fn, views):
    """`fn` of each view of a batch ([b, V, ...] -> [b, V, ...]), one view at a time: all views at
    once would hold V times the activations (ten views of a 64-image batch at 224 px make a
    640-image forward pass)."""
    found = jax.lax.map(fn, jnp.moveaxis(views, 1, 0))
    return jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), found)


def features_fn(model):
    """apply(variables, images, **kw) -> the pooled features a Backbone's head sees: [b, D] of
    images [b, H, W, 3], or [b, V, D] of views [b, V, H, W, 3]."""

    def features(variables, images, **kw):
        apply = functools.partial(model.apply, variables, method="features", **kw)
        if images.ndim == 4:
            return apply(images)
        return per_view(apply, images).reshape(*images.shape[:2], -1)

    return features


def logits_and_head_inputs(model, variables, images):
    """(logits, what the model's `head` layer (its classifier) takes) of images [b, H, W, 3], from
    one pass: the head's input is a Backbone's pooled features, the CNN's hidden layer. Of views
    [b, V, H, W, 3], each is the mean over the views (the logits as `steps.view_mean_logits`
    averages them)."""

    def one(x):
        seen = []

        def record(next_fun, args, kwargs, context):
            if context.method_name == "__call__" and context.module.scope.path == ("head",):
                seen.append(args[0])
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(record):
            logits = model.apply(variables, x, train=False)
        if len(seen) != 1:
            raise ValueError(f"{type(model).__name__}: its head is called {len(seen)} times")
        return logits, seen[0].astype(jnp.float32)

    if images.ndim == 4:
        return one(images)
    return jax.tree.map(lambda v: jnp.mean(v, axis=1), per_view(one, images))


def head_apply(model, with_era: bool = False):
    """apply(variables, features, **kw) -> logits: the head of a Backbone on cached features;
    `with_era`: (logits, the era head's outputs), what training's losses take."""
    return functools.partial(model.apply, method="heads" if with_era else "classify")


def call_with_era(model):
    """apply(variables, images, **kw) -> (logits, era estimate): the backbone once, both heads."""
    return functools.partial(model.apply, method="call_with_era")
