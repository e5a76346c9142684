"""Several EfficientNet-Lite backbones side by side under one head: the head sees each
backbone's pooled features, concatenated in the order of `versions` (a bag across backbones
averages their heads' probabilities instead; here one head weighs the backbones' features).

Each backbone is the submodule `lite<v>`, with the layout and names of `EfficientNetLite`, so
each one's ported weights load under its name (`transfer.load_initial_variables` takes one
checkpoint per backbone). All see the same input, at `data.image_size`.
"""

from __future__ import annotations

import jax.numpy as jnp

from artjax.models.efficientnet_lite import EfficientNetLite


def part_name(version: int) -> str:
    return f"lite{version}"


def _norms_of(frozen_norms, version: int) -> tuple[str, ...]:
    """The paths within one part of the frozen BatchNorm layers that lie in it."""
    prefix = part_name(version) + "/"
    return tuple(p[len(prefix) :] for p in frozen_norms if p.startswith(prefix))


class ConcatenatedLite(EfficientNetLite):
    """EfficientNet-Lite's fields (its `version` unused), with the backbones' `versions`."""

    versions: tuple[int, ...] = (0, 1)

    def setup(self):
        super().setup()  # the heads (Backbone)
        if len(set(self.versions)) != len(self.versions) or len(self.versions) < 2:
            raise ValueError(f"model.lite_versions {self.versions}: two or more distinct versions")
        self.parts = [
            EfficientNetLite(
                self.num_classes,
                version=v,
                drop_connect_rate=self.drop_connect_rate,
                bn_momentum=self.bn_momentum,
                dtype=self.dtype,
                axis_name=self.axis_name,
                conv=self.conv,
                frozen_norms=tuple(
                    p.split("/", 1)[1]
                    for p in self.frozen_norms
                    if p.startswith(part_name(v) + "/")
                ),
                pooled_stages=self.pooled_stages,
                gram_stages=self.gram_stages,
                name=part_name(v),
            )
            for v in self.versions
        ]

    def features(self, x, train: bool = False):
        return jnp.concatenate([part.features(x, train) for part in self.parts], axis=-1)
