"""The study's small CNN."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from artjax.models import layers

ModuleDef = Any


class BaselineCNN(nn.Module):
    """Chollet's "very little data" convnet, as in the study: four 3x3 conv + ReLU + 2x2 max-pool
    stages (32, 64, 128, 128 filters, 'valid' padding), flatten, dropout, dense 512, dense
    classes."""

    num_classes: int
    filters: Sequence[int] = (32, 64, 128, 128)
    hidden: int = 512
    dropout_rate: float = 0.4
    dtype: Any = jnp.float32
    conv: ModuleDef = layers.Conv
    pool: Callable = layers.max_pool

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        for i, f in enumerate(self.filters):
            if min(x.shape[1:3]) < 4:
                raise ValueError(
                    f"BaselineCNN: input {x.shape[1:3]} is too small for {len(self.filters)} "
                    "conv+pool stages; use a larger data.image_size (at least 46)"
                )
            x = self.conv(f, 3, dtype=self.dtype, name=f"conv{i + 1}")(x)
            x = nn.relu(self.pool(x, 2, 2, 0))  # = pool(relu(x)), on 4x fewer values
        x = x.reshape(x.shape[0], -1)
        x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(x)
        x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)
