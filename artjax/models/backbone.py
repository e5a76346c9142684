"""What the ImageNet backbones (ResNet, EfficientNet-Lite) share for transfer learning.

- `features()`: images -> the pooled features the classifier sees (the last activations' global
  average, plus those of the `pooled_stages`); `classify()`: dropout + the dense `head` on such
  features; `__call__` is both. Frozen-backbone runs call them separately with Flax's `method=`:
  the features once per image, then the head on them.
- `head_hidden` (a field; 0: none): a hidden layer `head_hidden_layer` (ReLU) between the
  features and the heads, which both heads share.
- `era` (a field): a second dense head, `era_head`, beside the classifier on the same input
  (a regression, or `era_bins` bins of `era_bin_years` from `era_bin_start`, whose expected
  centre is the estimate),
  estimates when a painting was made (`estimate_era`, in `artjax.era`'s units). `__call__` and
  `classify` return the style logits alone either way; `classify_with_era` returns both.
- `era_style_weight` (a field; 0: off): the era as a second opinion on the style. At prediction
  each style's logit loses that weight per century between the era estimate and the style's
  place in time (`style_years`, in `artjax.era` units), so a style far from when the painting
  seems made loses. `heads`, what training's losses take, gives the heads' own outputs.
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
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class PortKey:
    source: str  # layer name in the source file ("layer1.0.conv1", "conv2_block1_1_conv")
    target: str  # artjax module path ("stage1_block1/conv1")
    kind: str  # conv | depthwise | bn | dense


class Backbone(nn.Module):
    """An ImageNet backbone under dropout + the dense `head` that transfer learning replaces.
    Subclasses define `features` (compact) and the fields `num_classes`, `dropout_rate`, `dtype`,
    `head_hidden` and `era`."""

    def setup(self):
        self.dropout = nn.Dropout(self.dropout_rate)
        if self.head_hidden:
            self.head_hidden_layer = nn.Dense(self.head_hidden, dtype=self.dtype)
        self.head = nn.Dense(self.num_classes, dtype=self.dtype)
        if self.era:
            self.era_head = nn.Dense(max(1, self.era_bins), dtype=self.dtype)

    def __call__(self, x, train: bool = False):
        features = self.features(x, train)
        if self.era and self.is_initializing():
            self.estimate_era(features)  # creates the era head's parameters
        return self.classify(features, train)

    def features(self, x, train: bool = False):
        raise NotImplementedError

    def head_input(self, features, train: bool = False):
        """What the heads see: the features under dropout, through the shared hidden layer
        (`head_hidden` units, ReLU) where there is one."""
        x = self.dropout(features, deterministic=not train)
        if self.head_hidden:
            x = nn.relu(self.head_hidden_layer(x))
        return x

    def classify(self, features, train: bool = False):
        if self.era_style_weight:
            return self.classify_with_era(features, train)[0]
        return self.head(self.head_input(features, train)).astype(jnp.float32)

    def _style_given_era(self, logits, era):
        """The style logits less `era_style_weight` per century between the era estimate and each
        style's place in time."""
        if not self.era_style_weight or self.is_initializing():
            return logits
        if len(self.style_years) != self.num_classes:
            raise ValueError(
                f"model.era_style_weight needs a place in time for each of the {self.num_classes} "
                f"classes; model.style_years has {len(self.style_years)} (training fills it in)"
            )
        years = jnp.asarray(self.style_years, jnp.float32)
        return logits - self.era_style_weight * jnp.abs(era[..., None] - years)

    def _era_outputs(self, x):
        if not self.era:
            raise ValueError(f"{type(self).__name__} has no era head (model.era_head=False)")
        return self.era_head(x).astype(jnp.float32)

    def _era(self, x):
        """The estimate in `artjax.era` units: the regression's output, or the expected centre
        of the bins under their softmax."""
        outputs = self._era_outputs(x)
        if not self.era_bins:
            return outputs[..., 0]
        centres = era_bin_centres(self.era_bin_start, self.era_bin_years, self.era_bins)
        return jax.nn.softmax(outputs, -1) @ centres

    def estimate_era(self, features, train: bool = False):
        """[..., D] features -> [...] the era head's estimate (`artjax.era` units)."""
        return self._era(self.head_input(features, train))

    def heads(self, features, train: bool = False):
        """(style logits, the era head's outputs) of features, what training's losses take: the
        regression's [..., 1], or the bins' logits [..., era_bins]."""
        x = self.head_input(features, train)
        return self.head(x).astype(jnp.float32), self._era_outputs(x)

    def classify_with_era(self, features, train: bool = False):
        """(style logits, era estimate) of features: the two heads on one head input."""
        x = self.head_input(features, train)
        era = self._era(x)
        return self._style_given_era(self.head(x).astype(jnp.float32), era), era

    def call_with_era(self, x, train: bool = False):
        """(style logits, era estimate) of images."""
        return self.classify_with_era(self.features(x, train), train)


def era_bin_centres(start_year: float, bin_years: float, count: int):
    """The centres of the era head's bins, in `artjax.era` units (centuries from 1700)."""
    edges = (start_year + bin_years * jnp.arange(count + 1) - 1700.0) / 100.0
    return (edges[:-1] + edges[1:]) / 2


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
