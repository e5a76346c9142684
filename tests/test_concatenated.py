"""Backbones side by side: a concatenated model's features are each backbone's features, and
its weights are each backbone's own port."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from artjax import configs, models, train_state, transfer
from artjax.models import porting


def he_like(path, shape, rng):
    """A value for one variable of the given shape, by its name: He-scaled kernels, batch
    statistics near the identity, so that features stay finite through every block."""
    name = path[-1].key
    if name == "kernel":
        return rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
    if name in ("scale", "var"):
        return 1.0 + 0.1 * rng.uniform(size=shape)
    return 0.1 * rng.normal(size=shape)  # biases and means


def ported(version: int, path, seed: int):
    """A port of EfficientNet-Lite`version` with weights of its own (drawn from the shapes: a
    compiled init costs seconds per backbone)."""
    config = configs.model_config()
    config.update(name="efficientnet_lite", lite_version=version)
    model = models.create_model(config, 1000)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    rng = np.random.default_rng(seed)
    variables = jax.tree_util.tree_map_with_path(
        lambda p, s: he_like(p, s.shape, rng).astype(np.float32), shapes
    )
    meta = dict(
        source="efficientnet_lite",
        normalization="lite",
        input_size=32,
        num_classes=1000,
        has_head=True,
        architecture={"name": "efficientnet_lite", "lite_version": version},
    )
    return porting.save(path, variables, meta), model, variables


def test_the_features_are_each_backbones_side_by_side(tmp_path):
    (port0, lite0, weights0), (port1, lite1, weights1) = (
        ported(0, tmp_path / "lite0", 0),
        ported(1, tmp_path / "lite1", 1),
    )
    config = configs.base_config()
    config.model.update(name="efficientnet_lite_concat", lite_versions=(0, 1))
    config.model.pooled_stages = ("stage6",)
    config.data.image_size, config.data.normalization = 32, "lite"
    config.init.checkpoint = f"{port0},{port1}"
    config.freeze.trainable, config.freeze.batch_norm = "head", "frozen"
    model, plan = train_state.build_model(config, 4)
    assert plan.trainable == ("head",)  # both backbones frozen
    # What create_train_state loads the ports into, without compiling an init: its state's
    # structure, zero-filled (the head stays as it was, every backbone weight is a port's).
    like = train_state.abstract_train_state(config, model, plan=plan)
    structure = {"params": like.params, "batch_stats": like.batch_stats}
    fresh = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), structure)
    load = lambda: transfer.load_initial_variables(
        config.init, fresh, config.model, config.data, tuple("abcd")
    )
    images = np.asarray(jax.random.uniform(jax.random.PRNGKey(3), (2, 32, 32, 3)))
    features = jax.jit(lambda m, v, x: m.apply(v, x, method="features"), static_argnums=0)
    found = features(model, load(), images)
    side_by_side = []
    for m, w in ((lite0, weights0), (lite1, weights1)):
        one = m.clone(pooled_stages=("stage6",))
        side_by_side.append(features(one, w, images))
    assert np.isfinite(found).all() and found.std() > 0.01  # features, not overflow or zeros
    np.testing.assert_allclose(found, np.concatenate(side_by_side, -1), rtol=1e-5, atol=1e-6)

    config.init.checkpoint = f"{port1},{port0}"  # in the wrong order
    with pytest.raises(transfer.WeightsMismatchError, match="lite_version': 1.*not"):
        load()
    config.init.checkpoint = str(port0)
    with pytest.raises(transfer.WeightsMismatchError, match="one ported checkpoint per backbone"):
        load()
