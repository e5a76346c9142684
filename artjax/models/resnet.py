"""Bottleneck ResNet in its Keras (v1) and torchvision (v1.5) layouts, and their porting key
tables."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from artjax.models import layers
from artjax.models.backbone import Backbone, PortKey, batch_norm_factory, pool_features
from artjax.registry import Registry

ModuleDef = Any
# v1: Keras applications (stride in conv1, conv biases); v1.5: torchvision
VARIANTS = ("v1", "v1.5")
DEPTHS = Registry("model.depth", {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)})


class Bottleneck(nn.Module):
    filters: int
    strides: int
    project: bool
    variant: str
    norm: Any
    dtype: Any
    conv: ModuleDef

    @nn.compact
    def __call__(self, x):
        keras = self.variant == "v1"  # stride in the first 1x1 conv, conv biases
        conv = lambda f, k, s, pad, name: self.conv(
            f, k, s, pad, use_bias=keras, dtype=self.dtype, name=name
        )
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
    stage_sizes: Sequence[int] = DEPTHS[50]
    variant: str = "v1.5"
    width: int = 64
    bn_momentum: float = 0.9
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    axis_name: str | None = None  # set under pmap to synchronize BatchNorm statistics
    conv: ModuleDef = layers.Conv
    pool: Callable = layers.max_pool
    frozen_norms: tuple[str, ...] = ()
    # stage outputs pooled into the head's input besides the last, and those whose Gram matrices
    # join them (backbone.pool_features)
    pooled_stages: tuple[str, ...] = ()
    gram_stages: tuple[str, ...] = ()
    head_hidden: int = 0  # a hidden layer both heads share (Backbone)
    era: bool = False  # an era head beside the classifier (Backbone)
    era_bins: int = 0  # 0: the era head regresses; else its bins (Backbone)
    era_bin_start: float = 1200.0
    era_bin_years: float = 25.0
    era_style_weight: float = 0.0  # the era's weight on the style logits (Backbone)
    style_years: tuple[float, ...] = ()  # each class's place in time, in era units (Backbone)

    @nn.compact
    def features(self, x, train: bool = False):
        if self.variant not in VARIANTS:
            raise ValueError(f"ResNet variant {self.variant!r} is not one of {VARIANTS}")
        keras = self.variant == "v1"
        epsilon = 1.001e-5 if keras else 1e-5
        norm = batch_norm_factory(
            train, self.frozen_norms, self.bn_momentum, epsilon, self.dtype, self.axis_name
        )
        x = x.astype(self.dtype)
        x = self.conv(self.width, 7, 2, 3, use_bias=keras, dtype=self.dtype, name="conv1")(x)
        x = nn.relu(norm("bn1", "bn1")(x))
        x = self.pool(x, 3, 2, 1)
        stages = {"stem": x}
        for i, blocks in enumerate(self.stage_sizes):
            for j in range(blocks):
                x = Bottleneck(
                    self.width * 2**i,
                    strides=2 if (j == 0 and i > 0) else 1,
                    project=j == 0,
                    variant=self.variant,
                    norm=norm,
                    dtype=self.dtype,
                    conv=self.conv,
                    name=f"stage{i + 1}_block{j + 1}",
                )(x)
            stages[f"stage{i + 1}"] = x
        for name, value in stages.items():
            self.sow("intermediates", name, value)
        return pool_features(x, stages, self.pooled_stages, self.gram_stages)


def port_table(stage_sizes, framework: str) -> list[PortKey]:
    """torchvision (v1.5) or Keras applications (v1) layer names -> ResNet modules."""
    tv = framework == "torchvision"
    table = [
        PortKey("conv1" if tv else "conv1_conv", "conv1", "conv"),
        PortKey("bn1" if tv else "conv1_bn", "bn1", "bn"),
    ]
    for i, blocks in enumerate(stage_sizes):
        for j in range(blocks):
            block = f"stage{i + 1}_block{j + 1}"
            for k in (1, 2, 3):
                src = f"layer{i + 1}.{j}.conv{k}" if tv else f"conv{i + 2}_block{j + 1}_{k}_conv"
                table.append(PortKey(src, f"{block}/conv{k}", "conv"))
                src = f"layer{i + 1}.{j}.bn{k}" if tv else f"conv{i + 2}_block{j + 1}_{k}_bn"
                table.append(PortKey(src, f"{block}/bn{k}", "bn"))
            if j == 0:
                src = f"layer{i + 1}.0.downsample.0" if tv else f"conv{i + 2}_block1_0_conv"
                table.append(PortKey(src, f"{block}/proj_conv", "conv"))
                src = f"layer{i + 1}.0.downsample.1" if tv else f"conv{i + 2}_block1_0_bn"
                table.append(PortKey(src, f"{block}/proj_bn", "bn"))
    table.append(PortKey("fc" if tv else "predictions", "head", "dense"))
    return table
