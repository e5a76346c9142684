"""Fine-tuning depth (issue 34): the trainable shares of the unfreezing curve, the era loss reaching
a trainable backbone, random crops inside the painting that follow the seed, the gallery-photo
simulator wired into training, and experiments/style.py's choices."""

import functools
import json
import sys
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
from flax import traverse_util
from PIL import Image

from artjax import configs, era, figures, steps, train_state, trainer, transfer
from artjax.data import augment
from artjax.data import input_pipeline as ip
from tests.conftest import make_config

# the layer paths of an EfficientNet-Lite, shortened: stem, three blocks, the top convolution, heads
LITE_PATHS = (
    "stem_conv",
    "stem_bn",
    "block1/depthwise_conv",
    "block1/project_conv",
    "block2/expand_conv",
    "block2/depthwise_conv",
    "block2/project_conv",
    "block3/expand_conv",
    "block3/depthwise_conv",
    "block3/project_conv",
    "top_conv",
    "top_bn",
    "head",
    "era_head",
)


def _freeze(**overrides):
    found = configs.freeze_config()
    found.update(overrides)
    return found


def test_each_depth_names_a_growing_trainable_share():
    shares = {}
    for depth in transfer.DEPTHS:
        config = ml_collections.ConfigDict(dict(freeze=_freeze()))
        transfer.apply_depth(config, depth)
        shares[depth] = transfer.plan(config.freeze, LITE_PATHS, frozenset()).trainable
    assert shares["head"] == ("head", "era_head")
    assert shares["top_conv"] == ("top_conv", "top_bn", "head", "era_head")
    # 12 backbone layers: the last ceil(2.4) = 3 and the last 6
    assert shares["last20"] == ("block3/project_conv", "top_conv", "top_bn", "head", "era_head")
    assert shares["last50"] == LITE_PATHS[6:]
    assert shares["whole"] == LITE_PATHS
    with pytest.raises(ValueError, match="depth 'last30' is not one of .*'head', 'top_conv'"):
        transfer.apply_depth(ml_collections.ConfigDict(dict(freeze=_freeze())), "last30")
    with pytest.raises(ValueError, match="no top convolution.*'conv1'"):
        transfer.plan(_freeze(trainable="top_conv"), ("conv1", "bn1", "head"), frozenset())


def test_the_curve_names_each_depth_and_the_cached_views_recipe():
    names = {}
    for depth in transfer.DEPTHS:
        config = ml_collections.ConfigDict(dict(freeze=_freeze()))
        transfer.apply_depth(config, depth)
        names[depth] = figures.depth_label(config.freeze)
    assert names == {
        "head": "head",
        "top_conv": "top_conv",
        "last20": "last 20%",
        "last50": "last 50%",
        "whole": "whole",
    }
    # the frozen recipe's head on cached features is not the head on random crops
    cached = _freeze(trainable="head", feature_cache="checkpoints/feature_cache")
    assert figures.depth_label(cached) == "head, cached views"


def _era_config(tmp_path, depth: str):
    config = make_config("", tmp_path / "prepared")
    config.model.update(name="resnet", stage_sizes=(1,), width=4, dropout_rate=0.0)
    config.model.update(era_head=True, era_bins=4, era_bin_start=1500.0, era_bin_years=100.0)
    config.era.loss = "bins"
    config.freeze.batch_norm = "frozen"
    config.optimizer.name = config.backbone_optimizer.name = "sgd"
    config.optimizer.learning_rate = config.backbone_optimizer.learning_rate = 0.1
    transfer.apply_depth(config, depth)
    return config


def _image_step(config, era_weight: float):
    """(plan, parameters before, after) one step on a fixed batch of 8 16-px images, through the
    apply function artjax.train uses for images with an era head."""
    model, the_plan = train_state.build_model(config, 3)
    state = train_state.create_train_state(config, model, steps_per_epoch=4, plan=the_plan)
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.normal(size=(2, 4, 16, 16, 3)).astype(np.float32),
        "label": np.zeros((2, 4), np.int32),  # one class: the style loss pulls one way
        "era": np.tile(era.from_years([1500.0, 1550.0]), (2, 4, 1)),
    }
    step = functools.partial(
        steps.train_step,
        class_weights=jnp.ones(3),
        trainable=transfer.trainable_keys(state.params, the_plan),
        # without the era loss: the model's style logits alone (dropout 0: the same path)
        apply_fn=functools.partial(model.apply, method=trainer.image_heads) if era_weight else None,
        era_weight=era_weight,
        era_loss="bins",
        era_edges=trainer.era_bin_edges(config),
    )
    devices = jax.local_devices()[:2]
    p_step = jax.pmap(step, axis_name=steps.AXIS, devices=devices)
    new, _ = p_step(steps.replicate(state, devices), batch)
    before = traverse_util.flatten_dict(state.params)
    after = traverse_util.flatten_dict(steps.unreplicate(new).params)
    return the_plan, before, after


def test_the_era_loss_reaches_a_trainable_backbone_and_no_frozen_parameter(tmp_path):
    the_plan, before, with_era = _image_step(_era_config(tmp_path, "last50"), era_weight=1.0)
    _, _, without = _image_step(_era_config(tmp_path, "last50"), era_weight=0.0)
    labels = {k: the_plan.label("/".join(k[:-1])) for k in before}
    assert {"frozen", "backbone", "head"} <= set(labels.values())
    for key, label in labels.items():  # a frozen share trains nothing outside it
        assert np.array_equal(before[key], with_era[key]) == (label == "frozen"), key
        untrained = label == "frozen" or key[0] == "era_head"  # no era loss: no era gradient
        assert np.array_equal(before[key], without[key]) == untrained, key
    # the era loss's gradient moved every trainable backbone kernel beyond the style loss's step
    kernels = [k for k, label in labels.items() if label == "backbone" and k[-1] == "kernel"]
    assert kernels and all(
        not np.allclose(with_era[k], without[k], rtol=0, atol=1e-7) for k in kernels
    )


def test_random_crops_stay_inside_the_painting_and_follow_the_seed():
    height, width, scale = 50, 80, (0.4, 0.6)
    box = tf.function(lambda seed: augment.random_crop_box(seed, height, width, scale))
    boxes = [tuple(int(v) for v in box(tf.constant([0, i]))) for i in range(200)]
    for top, left, crop_h, crop_w in boxes:
        assert 0 <= top and top + crop_h <= height and 0 <= left and left + crop_w <= width
        assert 0.39 <= crop_h / height <= 0.61 and 0.39 <= crop_w / width <= 0.61
    assert len(set(boxes)) > 150  # the position and the scale vary with the seed ...
    assert min(b[0] for b in boxes) == 0 and max(b[0] + b[2] for b in boxes) == height
    assert (
        min(b[1] for b in boxes) == 0 and max(b[1] + b[3] for b in boxes) == width
    )  # ... all over
    again = augment.random_crop_box(tf.constant([0, 7]), height, width, scale)  # eagerly
    assert tuple(int(v) for v in again) == boxes[7]  # ... and the same seed gives the same crop

    # the view shows the box's rows and columns (mirrored or not): pixels encode their position
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.stack([rows * 5, cols * 3, np.zeros_like(rows)], -1).astype(np.uint8)
    crop = tf.function(augment.make_random_crop(24, scale))
    mirrored = 0
    for i in range(20):
        view = crop({"image": tf.constant(image), "rng": tf.constant([0, i])})["image"].numpy()
        top, left, crop_h, crop_w = boxes[i]
        assert view.shape == (24, 24, 3) and view.dtype == np.uint8
        assert 5 * top - 3 <= view[..., 0].min() and view[..., 0].max() <= 5 * (top + crop_h) + 3
        assert 3 * left - 3 <= view[..., 1].min() and view[..., 1].max() <= 3 * (left + crop_w)
        mirrored += int(view[0, 0, 1] > view[0, -1, 1])
    assert 3 <= mirrored <= 17
    with pytest.raises(ValueError, match="data.train_views 'crop' is not one of"):
        augment.TRAIN_VIEWS["crop"]


def _fake_photos(monkeypatch, calls):
    def photometric(image, rng, config):
        calls.append((image.dtype, image.shape, config.seed))
        return np.clip(image.astype(np.int16) + rng.integers(0, 9), 0, 255).astype(np.uint8)

    module = types.ModuleType("artjax.data.photos")
    module.photometric = photometric
    monkeypatch.setitem(sys.modules, "artjax.data.photos", module)
    import artjax.data

    monkeypatch.setattr(artjax.data, "photos", module, raising=False)


def test_photometric_augmentation_is_seeded_by_the_example(monkeypatch):
    calls = []
    _fake_photos(monkeypatch, calls)
    config = configs.base_config()
    op = augment.make_photometric(config)
    image = tf.fill([6, 6, 3], tf.constant(100, tf.uint8))
    first = op({"image": image, "rng": tf.constant([0, 3], tf.int64)})["image"].numpy()
    again = op({"image": image, "rng": tf.constant([0, 3], tf.int64)})["image"].numpy()
    others = {
        int(op({"image": image, "rng": tf.constant([0, i], tf.int64)})["image"].numpy()[0, 0, 0])
        for i in range(12)
    }
    np.testing.assert_array_equal(first, again)
    assert len(others) > 3
    assert calls[0][:2] == (np.uint8, (6, 6, 3))
    shift = np.random.default_rng(augment.photo_seed([0, 3])).integers(0, 9)
    assert int(first[0, 0, 0]) == 100 + shift


@pytest.fixture(scope="module")
def synthetic_data(synthetic_root, tmp_path_factory):
    config = make_config(synthetic_root, tmp_path_factory.mktemp("prepared"))
    return config, ip.prepare_data(config.data, config.seed)


def test_the_training_stream_of_random_crops_resumes_and_carries_the_era(
    synthetic_data, monkeypatch
):
    calls = []
    _fake_photos(monkeypatch, calls)
    config, data = synthetic_data
    config = config.copy_and_resolve_references()
    config.data.update(train_views="random_crops", photometric_augment=True)
    config.data.random_crop.source_size = 48
    config.model.era_head = True
    first = list(ip.train_dataset(data, config, 2).take(3).as_numpy_iterator())
    resumed = list(ip.train_dataset(data, config, 2, start_step=2).take(1).as_numpy_iterator())
    np.testing.assert_array_equal(first[2]["image"], resumed[0]["image"])
    np.testing.assert_array_equal(first[2]["era"], resumed[0]["era"])
    assert first[0]["image"].shape == (2, 4, 32, 32, 3) and calls
    periods = ip.artist_periods(data)
    known = {tuple(np.round(era.from_years(p), 4)) for p in periods.values()}
    assert {tuple(np.round(e, 4)) for e in first[0]["era"].reshape(-1, 2)} <= known


def test_the_style_experiment_names_every_choice():
    for name in ("adam", "sgd", "rmsprop"):
        config = configs.load(f"experiments/style.py:six,whole,{name}")
        assert config.backbone_optimizer.name == config.optimizer.name == name
        assert config.backbone_optimizer.learning_rate < config.optimizer.learning_rate
        assert config.freeze.trainable == "all" and config.data.classes == "study"
    config = configs.load("experiments/style.py")
    assert (config.freeze.trainable, config.freeze.fraction) == ("last_fraction", 0.2)
    assert config.data.train_views == "random_crops" and config.data.views == "crops"
    assert config.data.artist_balanced and config.model.era_head
    assert config.freeze.batch_norm == "frozen" and not config.data.photometric_augment
    changed = configs.load("experiments/style.py:genres,head,noera,bn_trainable,photos")
    assert changed.freeze.trainable == "head" and not changed.model.era_head
    assert changed.freeze.batch_norm == "trainable" and changed.data.photometric_augment
    with pytest.raises(ValueError, match="choose one of .*'last20', 'last50'"):
        configs.load("experiments/style.py:last20,last50")


def _epochs_file(workdir, val_accuracies, seconds):
    workdir.mkdir(parents=True)
    lines = [
        json.dumps({"step": i, "epoch": i + 1, "val_accuracy": v, "epoch_seconds": seconds})
        for i, v in enumerate(val_accuracies)
    ]
    (workdir / "metrics.jsonl").write_text("\n".join(lines))


def test_the_depth_figure_reads_a_runs_test_split_and_a_cvs_held_out_artists(tmp_path, monkeypatch):

    monkeypatch.setattr(figures, "depth_point", lambda w: ("last 20%", 0.204, "adam"))
    run, cv = tmp_path / "six_last20", tmp_path / "cv_last20"
    _epochs_file(run, [0.8, 0.9], 60.0)
    (run / "eval_test").mkdir()
    era = {"overall": {"mae_to_period": 30.4, "share_within_25": 0.6}}
    era["macro_over_artists"] = {"mae_to_period": 26.0, "share_within_25": 0.85}
    report = dict(accuracy=0.913, balanced_accuracy=0.824, macro={"f1": 0.845}, images=230)
    report.update(era=era, calibration={"ece": 0.124, "ece_calibrated": 0.033})
    (run / "eval_test/report.json").write_text(json.dumps(report))
    _epochs_file(cv / "fold_0", [0.5, 0.7], 30.0)
    _epochs_file(cv / "fold_1", [0.7, 0.9], 90.0)
    (cv / "cv.json").write_text(json.dumps({"fold_workdirs": ["fold_0", "fold_1"]}))
    artists = {"macro_share_listed": 0.311, "overall_share_listed": 0.27}
    cv_report = dict(pooled={"artists": artists}, era=era)
    cv_report["fold_summary"] = {"macro_share_listed": {"mean": 0.32, "std": 0.05}}
    cv_report["heldout_calibration"] = {"ece": 0.2, "ece_cross_fitted": 0.021}
    (cv / "cv_report.json").write_text(json.dumps(cv_report))

    rows = figures.depth_rows([run], [cv])
    assert [(r["kind"], r["value"], r["count"]) for r in rows] == [
        ("seen", 0.913, 230),
        ("unseen", 0.311, None),
    ]
    table = figures.depth_table(rows).splitlines()
    seen = next(line for line in table if line.startswith("| six_last20 "))
    assert "| 0.913 | 0.824 | 0.845 | 0.124 -> 0.033 | 26 y (0.85) | 2.0 | 0.800 0.900 |" in seen
    unseen = next(line for line in table if line.startswith("| cv_last20 "))
    # two folds: minutes summed (1 + 3), validation accuracy averaged by epoch
    assert "| **0.311** | 0.320 ± 0.050 | 0.270 | 30 y (0.60) | 0.200 -> 0.021 | 4.0 |" in unseen
    assert unseen.endswith("| 0.600 0.800 |")
    # one place per depth on the figure's axis, in order of share: the run and the CV meet at
    # theirs, and the frozen recipe stands beside the head on random crops
    frozen = dict(rows[1], label="head, cached views", share=0.0)
    head = dict(rows[0], label="head", share=0.0)
    assert figures.depth_places([*rows, frozen, head]) == [
        (0.0, "head"),
        (0.0, "head, cached views"),
        (0.204, "last 20%"),
    ]
    # a line per optimizer and kind: the most-measured optimizer of a kind first (its values are
    # written on the figure)
    sgd = [dict(r, optimizer="sgd", kind="unseen") for r in (frozen, head)]
    series = figures.depth_series([*rows, *sgd])
    assert [(kind, name, len(mine)) for kind, name, mine in series] == [
        ("seen", "adam", 1),
        ("unseen", "sgd", 2),
        ("unseen", "adam", 1),
    ]
    figures.depth_curve(tmp_path / "curve.png", [*rows, frozen, head, *sgd])
    with Image.open(tmp_path / "curve.png") as image:
        assert image.format == "PNG"
    cv_report["era"] = None  # a CV without the era head (style.py:noera)
    (cv / "cv_report.json").write_text(json.dumps(cv_report))
    assert "| 0.270 | - | 0.200 -> 0.021 |" in figures.depth_table(figures.depth_rows([], [cv]))
