"""What the ImageNet backbones (ResNet, EfficientNet-Lite) share for transfer learning.

- `features()`: images -> the pooled features the classifier sees (the last activations' global
  average, plus those of the `pooled_stages`); `classify()`: dropout + the dense `head` on such
  features; `__call__` is both. Frozen-backbone runs call them separately with Flax's `method=`:
  the features once per image, then the head on them.
- `sow("intermediates", ...)` after the stem and every stage, so parity tests can point at the stage
  that diverges.
- `frozen_norms`: paths ("stage1_block1/bn1") of BatchNorm layers that stay in inference mode while
  training (frozen layers, as Keras treats a non-trainable BatchNormalization).
- `PortKey`: a row of the explicit key tables that map a source framework's layers onto the modules;
  each architecture's table sits beside it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class PortKey:
    source: str  # layer name in the source file ("layer1.0.conv1", "conv2_block1_1_conv")
    target: str  # artjax module path ("stage1_block1/conv1")
    kind: str  # conv | depthwise | bn | dense


class Backbone(nn.Module):
    """An ImageNet backbone under dropout + the dense `head` that transfer learning replaces.
    Subclasses define `features` (compact) and the fields `num_classes`, `dropout_rate`, `dtype`."""

    def setup(self):
        self.dropout = nn.Dropout(self.dropout_rate)
        self.head = nn.Dense(self.num_classes, dtype=self.dtype)

    def __call__(self, x, train: bool = False):
        return self.classify(self.features(x, train), train)

    def features(self, x, train: bool = False):
        raise NotImplementedError

    def classify(self, features, train: bool = False):
        x = self.dropout(features, deterministic=not train)
        return self.head(x).astype(jnp.float32)


def pool_features(x, stages: dict, pooled_stages: Sequence[str], gram_stages: Sequence[str] = ()):
    """Global average of the last activations, followed by those of `pooled_stages` (mid-level
    texture statistics, which carry much of a painting's style), then the `gram_features` of
    `gram_stages` (which channels fire together: Gatys et al.'s style representation)."""
    unknown = [name for name in (*pooled_stages, *gram_stages) if name not in stages]
    if unknown:
        raise ValueError(
            f"model.pooled_stages/gram_stages {unknown} are not among this model's stages "
            f"{list(stages)}"
        )
    averages = [jnp.mean(x, axis=(1, 2))] + [
        jnp.mean(stages[n], axis=(1, 2)) for n in pooled_stages
    ]
    grams = [gram_features(stages[n]) for n in gram_stages]
    return jnp.concatenate(averages + grams, -1)


def gram_features(x):
    """[B, H, W, C] -> [B, C(C+1)/2]: the upper triangle of the Gram matrix of the channels,
    averaged over positions, under a signed square root (which evens out the scale of strong and
    weak co-activations, as in bilinear pooling). Computed in float32."""
    x = x.astype(jnp.float32)
    height, width, channels = x.shape[1:]
    gram = jnp.einsum("bhwc,bhwd->bcd", x, x) / (height * width)
    rows, cols = jnp.triu_indices(channels)
    upper = gram[:, rows, cols]
    return jnp.sign(upper) * jnp.sqrt(jnp.abs(upper))


def batch_norm_factory(
    train: bool,
    frozen_norms: Sequence[str],
    momentum: float,
    epsilon: float,
    dtype,
    axis_name: str | None,
):
    """norm(name, path): a BatchNorm in training mode unless `path` is frozen (inference mode)."""

    def norm(name: str, path: str):
        active = train and path not in frozen_norms
        return nn.BatchNorm(
            use_running_average=not active,
            momentum=momentum,
            epsilon=epsilon,
            dtype=dtype,
            axis_name=axis_name if active else None,
            name=name,
        )

    return norm
