"""Batches: device layout, padding masks, reproducibility and resume, class weights."""

import jax
import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from artjax.data import input_pipeline as ip
from tests.conftest import make_config


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
