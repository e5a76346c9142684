"""Soft targets over the order of styles in time: each class gives `time_smoothing` of its target
to the styles just before and after it, and the train step's loss is the cross-entropy against
those rows."""

import jax
import numpy as np
import pytest

from artjax import steps
from artjax.data import catalog
from tests.conftest import head_step, tiny_head


def test_each_style_gives_its_share_to_its_neighbours_in_time(real_data_root):
    periods = catalog.read_active_periods(real_data_root / "artists.csv")
    artist_genres = catalog.read_catalog(real_data_root).artist_genres
    classes = ("Baroque", "Impressionism", "Northern Renaissance", "Pop Art", "Romanticism")
    neighbours = catalog.time_neighbours(classes, artist_genres, periods)
    # in time: Northern Renaissance, Baroque, Romanticism, Impressionism, Pop Art
    assert neighbours["Romanticism"] == ("Baroque", "Impressionism")
    found = steps.time_soft_targets(classes, neighbours, 0.2)
    romanticism = found[classes.index("Romanticism")]
    expected = np.zeros(5)
    expected[classes.index("Romanticism")] = 0.8
    expected[[classes.index("Baroque"), classes.index("Impressionism")]] = 0.1
    np.testing.assert_allclose(romanticism, expected, rtol=1e-6)
    pop = found[classes.index("Pop Art")]  # the last in time has one neighbour
    assert pop[classes.index("Pop Art")] == pytest.approx(0.8)
    assert pop[classes.index("Impressionism")] == pytest.approx(0.2)
    np.testing.assert_allclose(found.sum(1), 1.0, rtol=1e-6)


def test_the_train_step_uses_the_rows_as_targets(tmp_path):
    model, state = tiny_head(tmp_path, 3)
    features = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (8, 16)))
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
    matrix = steps.time_soft_targets(("a", "b", "c"), {"a": ("b",), "b": ("a", "c")}, 0.3)
    logits = model.apply({"params": state.params}, features, method="classify")
    log_p = np.asarray(jax.nn.log_softmax(logits))
    expected = np.mean(-(matrix[labels] * log_p).sum(-1))
    batch = {"image": features, "label": labels}
    _, metrics = head_step(model, state, batch, target_matrix=matrix)
    assert float(metrics["loss"][0]) == pytest.approx(expected, rel=1e-5)
    assert matrix[2].tolist() == [0, 0, 1]  # a class without neighbours keeps its one-hot
