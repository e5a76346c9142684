"""CORAL across artists within a class: zero when the artists' outputs are distributed alike,
and the Frobenius gap of their covariances (numpy reference) when they are not."""

import numpy as np
import pytest

from artjax import steps


def reference(outputs, labels, artists):
    gaps = []
    for a in np.unique(artists):
        mine = artists == a
        c = labels[mine][0]
        of_class = labels == c
        if mine.sum() >= 2 and of_class.sum() > mine.sum():
            gap = np.cov(outputs[mine].T, bias=True) - np.cov(outputs[of_class].T, bias=True)
            gaps.append((gap**2).sum() / (4 * outputs.shape[1] ** 2))
    return np.mean(gaps)


def test_coral_is_zero_for_artists_distributed_alike_and_the_covariance_gap_otherwise():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(4, 3)).astype(np.float32)
    other = rng.normal(size=(3, 3)).astype(np.float32)
    outputs = np.concatenate([shared, shared, other])  # artists 0 and 1: class 0; artist 2: 1
    labels = np.array([0] * 8 + [1] * 3, np.int32)
    artists = np.array([0] * 4 + [1] * 4 + [2] * 3, np.int32)
    alike = steps.coral_loss(outputs, labels, artists, num_classes=2, num_artists=4)
    assert float(alike) == pytest.approx(0.0, abs=1e-7)
    stretched = outputs.copy()
    stretched[4:8] = 3.0 * (shared - shared.mean(0)) + shared.mean(0)
    found = steps.coral_loss(stretched, labels, artists, num_classes=2, num_artists=4)
    assert float(found) > 0
    assert float(found) == pytest.approx(reference(stretched, labels, artists), rel=1e-4)


def test_the_train_step_adds_the_weighted_coral_loss(tmp_path):
    import jax

    from tests.conftest import head_step, tiny_head

    model, state = tiny_head(tmp_path, 3)
    features = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (8, 16)))
    labels = np.array([0, 0, 0, 1, 0, 0, 0, 1], np.int32)
    artists = np.array([0, 0, 1, 2, 0, 1, 1, 2], np.int32)
    logits = np.asarray(model.apply({"params": state.params}, features, method="classify"))
    style = np.mean(np.asarray(steps.example_losses(logits, labels, 0.0)))
    halves = [slice(0, 4), slice(4, 8)]  # each device's share
    coral = np.mean([reference(logits[h], labels[h], artists[h]) for h in halves])
    batch = {"image": features, "label": labels, "artist": artists}
    _, metrics = head_step(model, state, batch, coral_weight=2.0, num_artists=3)
    assert float(metrics["loss"][0]) == pytest.approx(style + 2.0 * coral, rel=1e-4)
