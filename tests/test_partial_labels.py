"""Partial labels: multi-genre artists train on their listed classes with the loss -log(total
probability of the listed classes); splits, folds and held-out scoring stay the single-genre
artists'."""

import numpy as np
import pytest

from artjax import steps
from artjax.data import input_pipeline as ip
from tests.conftest import make_config

MULTI = "Synthetic Multi Genre Painter"  # the synthetic set's "Cubism,Pop Art" artist


def test_the_partial_label_loss_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    targets = np.array(
        [[1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1], [1, 0, 0, 1]], np.float32
    )
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = -np.log((p * targets).sum(-1))
    found = steps.MULTI_LABEL_LOSSES["partial"](logits, targets, 0.0)
    np.testing.assert_allclose(found, expected, rtol=1e-5)
    assert float(found[2]) == pytest.approx(0.0, abs=1e-6)  # every class listed: no loss
    # one listed class, smoothed: the label-smoothed softmax cross-entropy
    one_hot = targets[[0, 3]]
    smoothed = (1 - 0.1) * one_hot + 0.1 / 4
    reference = -(smoothed * np.log(p[[0, 3]])).sum(-1)
    found = steps.MULTI_LABEL_LOSSES["partial"](logits[[0, 3]], one_hot, 0.1)
    np.testing.assert_allclose(found, reference, rtol=1e-5)


@pytest.mark.parametrize("cv", ["", "artist"])
def test_multi_genre_artists_train_and_nothing_else_moves(synthetic_root, tmp_path, cv):
    config = make_config(synthetic_root, tmp_path / "prepared")
    config.data.cv.by, config.data.cv.folds = cv, 2
    without = ip.prepare_data(config.data, 0)
    config.data.partial_labels = True
    data = ip.prepare_data(config.data, 0)
    partial = {r.filename for r in data.rows if r.artist == MULTI}
    assert len(partial) == 3 and partial <= data.members["train"]
    assert data.members["train"] - partial == without.members["train"]
    assert data.members["val"] == without.members["val"]
    assert data.members["test"] == without.members["test"]
    assert data.heldout_artists == without.heldout_artists
    assert data.single_artist_classes == without.single_artist_classes
    rows = [r for r in data.rows if r.filename in data.members["train"]]
    labels = ip.numpy_labels(data, rows)
    cubism, pop = data.classes.index("Cubism"), data.classes.index("Pop Art")
    for row, label in zip(rows, labels):
        expected = np.zeros(len(data.classes))
        if row.artist == MULTI:
            expected[[cubism, pop]] = 1
        else:
            expected[data.classes.index(row.style)] = 1
        np.testing.assert_array_equal(label, expected)
    # the other splits keep class indices: they are scored as before
    test_rows = [r for r in data.rows if r.filename in data.members["test"]]
    assert ip.numpy_labels(data, test_rows).ndim == 1
    assert data.counts["train"][cubism] == without.counts["train"][cubism] + 3


def test_the_image_pipeline_gives_partial_labels_by_filename(synthetic_root, tmp_path):
    """A trainable backbone trains on images: their labels are numpy_labels' targets (the
    multi-genre painter's list both classes), and the scored splits keep class indices."""
    config = make_config(synthetic_root, tmp_path / "prepared")
    config.data.partial_labels = True
    data = ip.prepare_data(config.data, 0)
    listed = {}
    for split, dtype in (("train", np.float32), ("val", np.int32)):
        rows = [r for r in data.rows if r.filename in data.members[split]]
        expected = dict(zip((r.filename for r in rows), ip.numpy_labels(data, rows)))
        found = {
            ex["filename"].decode(): ex["label"]
            for ex in ip.split_dataset(data, split).as_numpy_iterator()
        }
        assert found.keys() == expected.keys()
        for name, label in found.items():
            assert label.dtype == dtype
            np.testing.assert_array_equal(label, expected[name], err_msg=name)
        listed[split] = found
    artist = {r.filename: r.artist for r in data.rows}
    assert {n for n, label in listed["train"].items() if label.sum() == 2} == {
        n for n in listed["train"] if artist[n] == MULTI
    }
