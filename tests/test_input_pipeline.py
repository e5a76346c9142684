"""Batches: device layout, padding masks, reproducibility and resume, class weights, the training
draw (class and artist balance)."""

import shutil

import jax
import numpy as np
import pytest
from scipy import stats
from sklearn.utils.class_weight import compute_class_weight

from artjax.data import feature_batches
from artjax.data import input_pipeline as ip
from tests.conftest import make_config
from tests.test_crossval import _add_artist


@pytest.fixture(scope="module")
def synthetic_data(synthetic_root, tmp_path_factory):
    config = make_config(synthetic_root, tmp_path_factory.mktemp("prepared"))
    return config, ip.prepare_data(config.data, config.seed)


def test_four_fake_devices_layout(synthetic_data):
    config, data = synthetic_data
    assert jax.local_device_count() == 4
    batch = next(ip.train_dataset(data, config, num_devices=4).as_numpy_iterator())
    assert batch["image"].shape == (4, 2, 32, 32, 3) and batch["label"].shape == (4, 2)
    assert (
        batch["image"].dtype == np.float32
        and 0 <= batch["image"].min()
        and batch["image"].max() <= 1
    )


def test_batch_that_does_not_divide_is_a_clear_error(synthetic_data):
    config, data = synthetic_data
    config = config.copy_and_resolve_references()
    config.batch_size = 6
    with pytest.raises(
        ValueError, match="batch size 6 does not divide over 1 process.*4 local device"
    ):
        ip.train_dataset(data, config, num_devices=4)


def test_eval_counts_every_image_once(synthetic_data):
    config, data = synthetic_data
    for split in ip.SPLITS:
        labels = []
        for batch in ip.eval_dataset(data, split, config, num_devices=4).as_numpy_iterator():
            assert batch["mask"].shape == (4, 2)
            labels += list(batch["label"][batch["mask"] == 1])
        assert np.bincount(labels, minlength=len(data.classes)).tolist() == data.counts[split]


def test_train_stream_is_reproducible_and_resumable(synthetic_data):
    config, data = synthetic_data
    first = list(ip.train_dataset(data, config, 4).take(5).as_numpy_iterator())
    again = list(ip.train_dataset(data, config, 4).take(5).as_numpy_iterator())
    resumed = list(ip.train_dataset(data, config, 4, start_step=3).take(2).as_numpy_iterator())
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(first[3:], resumed):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_class_weights_and_oversampling(synthetic_root, tmp_path):
    config = make_config(synthetic_root, tmp_path / "p", classes="Cubism,Pop Art,Byzantine Art")
    config.data.val_fraction = 0.5
    data = ip.prepare_data(config.data, 0)
    labels = np.repeat(np.arange(3), data.counts["train"])
    np.testing.assert_allclose(
        data.class_weights,
        compute_class_weight("balanced", classes=np.arange(3), y=labels),
        rtol=1e-6,
    )
    config.data.oversample_power = 0.0  # balanced draws
    seen = np.concatenate(
        [b["label"].ravel() for b in ip.train_dataset(data, config, 1).take(60).as_numpy_iterator()]
    )
    assert np.all(np.abs(np.bincount(seen, minlength=3) / len(seen) - 1 / 3) < 0.06)


def _rows(artists_and_counts):
    """Rows of a made-up training split: {(style, artist): images}."""
    found = []
    for (style, artist), n in artists_and_counts.items():
        for i in range(n):
            found.append(ip.Row(f"{artist}_{i}", style, artist, len(found), (style,), ""))
    return found


UNEVEN = {("A", "a1"): 60, ("A", "a2"): 10, ("A", "a3"): 5, ("B", "b1"): 20, ("B", "b2"): 4}


@pytest.mark.parametrize(
    "power, artist_balanced, expected",
    [
        # balanced classes, then each class's artists equally
        (0.0, True, {"a1": 1 / 6, "a2": 1 / 6, "a3": 1 / 6, "b1": 1 / 4, "b2": 1 / 4}),
        # classes as in the data (75 : 24), then each class's artists equally
        (None, True, {"a1": 25 / 99, "a2": 25 / 99, "a3": 25 / 99, "b1": 12 / 99, "b2": 12 / 99}),
        # balanced classes, artists by their image counts (the image-balanced draw)
        (0.0, False, {"a1": 0.4, "a2": 1 / 15, "a3": 1 / 30, "b1": 5 / 12, "b2": 1 / 12}),
    ],
)
def test_artist_balanced_sampling_draws_artists_at_the_intended_rates(
    power, artist_balanced, expected
):
    rows = _rows(UNEVEN)
    probs = ip.example_sampling_probabilities(rows, lambda r: (r.style,), power, artist_balanced)
    config = make_config("", "")
    config.batch_size = 16
    labels = np.array([0 if r.style == "A" else 1 for r in rows], np.int32)
    features = {"features": np.arange(len(rows), dtype=np.float32)[:, None], "label": labels}
    stream = feature_batches.train_batches(features, config, 4, 0, probs)
    drawn = np.concatenate([next(stream)["image"].reshape(-1) for _ in range(300)]).astype(int)
    artists = sorted(expected)
    observed = [sum(rows[i].artist == a for i in drawn) for a in artists]
    rates = np.array([expected[a] for a in artists])
    # 4,800 draws (seed fixed): the intended rates pass a chi-square test ...
    assert stats.chisquare(observed, rates * len(drawn)).pvalue > 0.01
    # ... the image-count rates (each image equally likely) do not
    natural = np.array([sum(n for (_, a), n in UNEVEN.items() if a == b) for b in artists])
    assert stats.chisquare(observed, natural / natural.sum() * len(drawn)).pvalue < 1e-6
    # within an artist, every image equally likely
    a1 = [i for i in drawn if rows[i].artist == "a1"]
    assert stats.chisquare(np.bincount(a1, minlength=60)[:60]).pvalue > 0.001


def test_the_image_pipeline_draws_artists_at_the_same_rates(synthetic_root, tmp_path):
    grown = tmp_path / "grown"
    shutil.copytree(synthetic_root, grown)
    _add_artist(grown, "Synthetic Cubism Painter 3", "Cubism", images=24)
    # each artist's stream repeats, then shuffles: a buffer of 2048 would be filled from hundreds
    # of repeats of a synthetic artist's 8 paintings (seconds per stream); the rates do not change
    config = make_config(
        grown, tmp_path / "prepared", oversample_power=0.0, artist_balanced=True, shuffle_buffer=64
    )
    data = ip.prepare_data(config.data, config.seed)
    rows = [r for r in data.rows if r.filename in data.members["train"]]
    probs = ip.training_draw(data, config, [r.filename for r in rows])
    expected = {}
    for r, p in zip(rows, probs):
        expected[r.artist] = expected.get(r.artist, 0.0) + p
    cubists = [a for a in expected if "Cubism" in a]
    assert len(cubists) == 3 and np.allclose([expected[a] for a in cubists], 1 / 18)
    train = ip.split_dataset(data, "train").cache()  # as train_dataset caches before the draw
    drawn = ip.drawn_by_artist(train, data, config).take(3000)
    artist_of = {r.filename: r.artist for r in rows}
    counts = {}
    for names in drawn.map(lambda ex: ex["filename"]).batch(1000).as_numpy_iterator():
        for name in names:
            counts[artist_of[name.decode()]] = counts.get(artist_of[name.decode()], 0) + 1
    artists = sorted(expected)
    observed = [counts.get(a, 0) for a in artists]
    assert stats.chisquare(observed, [expected[a] * 3000 for a in artists]).pvalue > 0.01
