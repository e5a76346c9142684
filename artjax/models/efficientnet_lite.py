"""EfficientNet-Lite0..4 (TF's efficientnet/lite builder, as ported to PyTorch by
`efficientnet-lite-pytorch`), and its porting key table."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from artjax.models import layers
from artjax.models.backbone import Backbone, PortKey, batch_norm_factory, pool_features
from artjax.registry import Registry

ModuleDef = Any
# No squeeze-excitation, ReLU6, stem and head not scaled. Per stage:
# (repeats, kernel, stride, expand ratio, input filters, output filters).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# version -> (width coefficient, depth coefficient, resolution, dropout rate)
VERSIONS = Registry(
    "model.lite_version",
    {
        0: (1.0, 1.0, 224, 0.2),
        1: (1.0, 1.1, 240, 0.2),
        2: (1.1, 1.2, 260, 0.3),
        3: (1.2, 1.4, 280, 0.3),
        4: (1.4, 1.8, 300, 0.3),
    },
)


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TF's rounding of scaled filter counts to a multiple of 8, never more than 10% down."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def _repeats(stage: int, repeats: int, depth: float) -> int:
    fixed = stage in (0, len(STAGES) - 1)  # first and last stages keep their depth
    return repeats if fixed else int(math.ceil(depth * repeats))


def blocks(version: int) -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expand ratio, input filters, output filters) of every MBConv block, in
    order."""
    width, depth, _, _ = VERSIONS[version]
    found = []
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES):
        cin = 32 if i == 0 else round_filters(cin, width)
        cout = round_filters(cout, width)
        for r in range(_repeats(i, repeats, depth)):
            found.append((kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout))
    return found


def stage_ends(version: int) -> list[int]:
    """1-based index of the last block of each stage (where the intermediates are sown)."""
    _, depth, _, _ = VERSIONS[version]
    ends, total = [], 0
    for i, (repeats, *_rest) in enumerate(STAGES):
        total += _repeats(i, repeats, depth)
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
    conv: ModuleDef

    @nn.compact
    def __call__(self, x, train: bool):
        def conv(f, k, s, name, depthwise=False):
            return self.conv(
                f, k, s, "same", use_bias=False, depthwise=depthwise, dtype=self.dtype, name=name
            )

        norm = lambda name: self.norm(name, f"{self.name}/{name}")
        y = x
        hidden = self.in_filters * self.expand
        if self.expand != 1:
            y = nn.relu6(norm("expand_bn")(conv(hidden, 1, 1, "expand_conv")(y)))
        y = nn.relu6(
            norm("depthwise_bn")(conv(hidden, self.kernel, self.strides, "depthwise_conv", True)(y))
        )
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
    conv: ModuleDef = layers.Conv
    frozen_norms: tuple[str, ...] = ()
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
        all_blocks, ends = blocks(self.version), stage_ends(self.version)
        norm = batch_norm_factory(
            train, self.frozen_norms, self.bn_momentum, 1e-3, self.dtype, self.axis_name
        )
        conv = lambda f, k, s, name: self.conv(
            f, k, s, "same", use_bias=False, dtype=self.dtype, name=name
        )
        x = nn.relu6(norm("stem_bn", "stem_bn")(conv(32, 3, 2, "stem_conv")(x.astype(self.dtype))))
        stages = {"stem": x}
        for idx, (kernel, strides, expand, cin, cout) in enumerate(all_blocks):
            drop_rate = self.drop_connect_rate * idx / len(all_blocks)
            x = MBConv(
                kernel,
                strides,
                expand,
                cin,
                cout,
                drop_rate,
                norm,
                self.dtype,
                self.conv,
                name=f"block{idx + 1}",
            )(x, train)
            if idx + 1 in ends:
                stages[f"stage{ends.index(idx + 1) + 1}"] = x
        for name, value in stages.items():
            self.sow("intermediates", name, value)
        x = nn.relu6(norm("top_bn", "top_bn")(conv(1280, 1, 1, "top_conv")(x)))
        return pool_features(x, stages, self.pooled_stages, self.gram_stages)


def port_table(version: int) -> list[PortKey]:
    """efficientnet-lite-pytorch's layer names -> EfficientNetLite modules."""
    table = [PortKey("_conv_stem", "stem_conv", "conv"), PortKey("_bn0", "stem_bn", "bn")]
    for idx, (_, _, expand, _, _) in enumerate(blocks(version)):
        src, dst = f"_blocks.{idx}", f"block{idx + 1}"
        if expand != 1:
            table += [
                PortKey(f"{src}._expand_conv", f"{dst}/expand_conv", "conv"),
                PortKey(f"{src}._bn0", f"{dst}/expand_bn", "bn"),
            ]
        table += [
            PortKey(f"{src}._depthwise_conv", f"{dst}/depthwise_conv", "depthwise"),
            PortKey(f"{src}._bn1", f"{dst}/depthwise_bn", "bn"),
            PortKey(f"{src}._project_conv", f"{dst}/project_conv", "conv"),
            PortKey(f"{src}._bn2", f"{dst}/project_bn", "bn"),
        ]
    table += [
        PortKey("_conv_head", "top_conv", "conv"),
        PortKey("_bn1", "top_bn", "bn"),
        PortKey("_fc", "head", "dense"),
    ]
    return table
