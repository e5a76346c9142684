"""Transfer learning: which layers train, frozen BatchNorm, strict merging, cached features."""

import functools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import jax_utils, traverse_util

from artjax import checkpointing, evaluation, hooks, models, steps, train_state, trainer, transfer
from artjax.data import feature_batches
from artjax.data import input_pipeline as ip
from tests.conftest import make_config, make_tiny_port

TINY_RESNET = {
    "model.name": "resnet",
    "model.stage_sizes": (1, 1),
    "model.width": 4,
    "model.dropout_rate": 0.0,
}


def config_with(tmp_path, root="", **overrides):
    config = make_config(root, tmp_path / "prepared")
    config.num_epochs = 2
    config.log_every_steps = 2
    config.data.augment_enabled = False
    for key, value in {**TINY_RESNET, **overrides}.items():
        target = config
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return config


def test_last_fraction_counts_layers_with_parameters_from_the_top(tmp_path):
    config = config_with(
        tmp_path,
        **{
            "freeze.trainable": "last_fraction",
            "freeze.fraction": 0.2,
            "freeze.batch_norm": "frozen",
        },
    )
    _, the_plan = train_state.build_model(config, 6)
    # 18 backbone layers (stem conv+bn, 8 per block); ceil(0.2 * 18) = 4, plus the head.
    assert the_plan.trainable == (
        "stage2_block1/conv3",
        "stage2_block1/bn3",
        "stage2_block1/proj_conv",
        "stage2_block1/proj_bn",
        "head",
    )
    assert len(the_plan.frozen_norms) == 9  # every BatchNorm, trainable layers' included
    config.freeze.batch_norm = "trainable"
    _, the_plan = train_state.build_model(config, 6)
    assert the_plan.frozen_norms == (
        "bn1",
        "stage1_block1/bn1",
        "stage1_block1/bn2",
        "stage1_block1/bn3",
        "stage1_block1/proj_bn",
        "stage2_block1/bn1",
        "stage2_block1/bn2",
    )


def test_lite0_fine_tuning_unfreezes_its_last_three_blocks_and_top():
    model = models.EfficientNetLite(6)
    paths, _ = transfer.layer_paths(model, 64)
    # stem 2 + block1 4 + 15 blocks x 6 + top 2 = 98 backbone layers, + head
    assert len(paths) == 99
    cfg = __import__("ml_collections").ConfigDict(
        dict(trainable="last_fraction", fraction=0.2, modules="", batch_norm="frozen")
    )
    the_plan = transfer.plan(cfg, paths, set())
    assert {p.split("/")[0] for p in the_plan.trainable} == {
        "block14",
        "block15",
        "block16",
        "top_conv",
        "top_bn",
        "head",
    }


def test_named_modules_and_unknown_names(tmp_path):
    config = config_with(tmp_path, **{"freeze.trainable": "modules", "freeze.modules": "stage2"})
    _, the_plan = train_state.build_model(config, 6)
    assert {p.split("/")[0] for p in the_plan.trainable} == {"stage2_block1", "head"}
    config.freeze.modules = "stage2,stage9"
    with pytest.raises(
        ValueError, match=r"\['stage9'\].*top-level modules are \['bn1', 'conv1', 'head'"
    ):
        train_state.build_model(config, 6)


def _steps(config, state, the_plan, batch, n, devices, apply_fn=None):
    trainable = transfer.trainable_keys(state.params, the_plan)
    p_step = jax.pmap(
        functools.partial(
            steps.train_step, class_weights=jnp.ones(6), trainable=trainable, apply_fn=apply_fn
        ),
        axis_name=steps.AXIS,
        devices=jax.devices()[:devices],
    )
    laid = {k: v.reshape(devices, -1, *v.shape[1:]) for k, v in batch.items()}
    state = jax_utils.replicate(state, jax.devices()[:devices])
    for _ in range(n):
        state, _ = p_step(state, laid)
    return steps.unreplicate(state)


def _batch(size=32, n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.normal(size=(n, size, size, 3)).astype(np.float32),
        "label": rng.integers(0, 6, n).astype(np.int32),
    }


@pytest.mark.parametrize("backbone_lr", [0.0, 0.05])
def test_frozen_layers_and_their_statistics_never_change(tmp_path, backbone_lr):
    config = config_with(
        tmp_path,
        **{
            "freeze.trainable": "last_fraction",
            "freeze.fraction": 0.2,
            "freeze.batch_norm": "trainable",
            "backbone_optimizer.name": "sgd",
            "backbone_optimizer.learning_rate": backbone_lr,
        },
    )
    model, the_plan = train_state.build_model(config, 6)
    state = train_state.create_train_state(config, model, steps_per_epoch=4)
    new = _steps(config, state, the_plan, _batch(), 2, 4)
    before, after = traverse_util.flatten_dict(state.params), traverse_util.flatten_dict(new.params)
    for key in before:
        label = the_plan.label("/".join(key[:-1]))
        same = np.array_equal(before[key], after[key])
        assert same == (label == "frozen" or (label == "backbone" and backbone_lr == 0.0)), key
    stats_before = traverse_util.flatten_dict(state.batch_stats)
    stats_after = traverse_util.flatten_dict(new.batch_stats)
    for key in stats_before:
        assert np.array_equal(stats_before[key], stats_after[key]) == (
            "/".join(key[:-1]) in the_plan.frozen_norms
        )


def test_transfer_step_is_the_same_on_one_and_four_devices(tmp_path):
    config = config_with(
        tmp_path,
        **{
            "freeze.trainable": "last_fraction",
            "freeze.fraction": 0.5,
            "freeze.batch_norm": "trainable",
            "optimizer.name": "sgd",
            "optimizer.learning_rate": 0.1,
        },
    )
    model, the_plan = train_state.build_model(config, 6)
    state = train_state.create_train_state(config, model, steps_per_epoch=4)
    one, four = (_steps(config, state, the_plan, _batch(), 1, d) for d in (1, 4))
    for a, b in zip(
        jax.tree.leaves((one.params, one.batch_stats)),
        jax.tree.leaves((four.params, four.batch_stats)),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_head_trained_on_cached_features_equals_one_trained_on_images(tmp_path):
    config = config_with(
        tmp_path,
        **{
            "freeze.trainable": "head",
            "freeze.batch_norm": "frozen",
            "optimizer.name": "sgd",
            "optimizer.learning_rate": 0.5,
        },
    )
    model, the_plan = train_state.build_model(config, 6)
    state = train_state.create_train_state(config, model, steps_per_epoch=4)
    batch = _batch()
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    features = np.asarray(model.apply(variables, batch["image"], method="features"))
    on_images = _steps(config, state, the_plan, batch, 3, 4)
    on_features = _steps(
        config,
        state,
        the_plan,
        {"image": features, "label": batch["label"]},
        3,
        4,
        apply_fn=models.head_apply(model),
    )
    np.testing.assert_allclose(
        on_features.params["head"]["kernel"],
        on_images.params["head"]["kernel"],
        rtol=1e-5,
        atol=1e-6,
    )
    assert not np.allclose(on_images.params["head"]["kernel"], state.params["head"]["kernel"])


def test_merge_is_strict_and_replaces_the_head():
    fresh = {
        "params": {
            "conv": {"kernel": jnp.zeros((3, 3))},
            "bn": {"scale": jnp.zeros(3)},
            "head": {"kernel": jnp.zeros((3, 6))},
        }
    }
    loaded = {
        "params": {
            "conv": {"kernel": np.ones((3, 3))},
            "bn": {"scale": np.ones(3)},
            "head": {"kernel": np.ones((3, 1000))},
        }
    }
    merged = transfer.merge_strict(fresh, loaded, "port")
    assert merged["params"]["conv"]["kernel"].sum() == 9 and merged["params"]["head"][
        "kernel"
    ].shape == (3, 6)
    assert merged["params"]["head"]["kernel"].sum() == 0  # the fresh head
    bad = {
        "params": {
            "conv": {"kernel": np.ones((3, 4))},
            "extra": {"bias": np.ones(2)},
            "head": loaded["params"]["head"],
        }
    }
    with pytest.raises(
        transfer.WeightsMismatchError,
        match=r"(?s)missing \(1\): params/bn/scale.*unexpected \(1\): params/extra/bias.*"
        r"wrong shapes \(1\): params/conv/kernel: model \(3, 3\), file \(3, 4\)",
    ):
        transfer.merge_strict(fresh, bad, "port")


@pytest.fixture
def tiny_port(tmp_path):
    """A ported checkpoint of a tiny ResNet (as `python -m artjax.port` writes them)."""
    return make_tiny_port(config_with(tmp_path).model, tmp_path / "port")


def test_frozen_run_on_cached_features_starts_from_the_port_and_evaluates_on_images(
    synthetic_root, tmp_path, tiny_port
):
    path, ported = tiny_port
    config = config_with(
        tmp_path,
        synthetic_root,
        **{
            "init.checkpoint": str(path),
            "data.normalization": "imagenet",
            "freeze.trainable": "head",
            "freeze.batch_norm": "frozen",
            "model.dropout_rate": 0.0,
        },
    )
    trainer.train_and_evaluate(
        config, tmp_path / "interrupted", extra_hooks=[hooks.StopAfterEpoch(1)]
    )
    trainer.train_and_evaluate(config, tmp_path / "run")
    shutil.rmtree(path)  # a resumed run needs only its workdir
    trainer.train_and_evaluate(config, tmp_path / "interrupted")
    _, _, resumed, _ = train_state.load_run(tmp_path / "interrupted", "latest")
    _, run, state, step = train_state.load_run(tmp_path / "run", "latest")
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # resumed == uninterrupted
    for key, value in traverse_util.flatten_dict(ported["params"]).items():
        if key[0] != "head":
            np.testing.assert_array_equal(traverse_util.flatten_dict(state.params)[key], value)
    assert state.params["head"]["kernel"].shape[-1] == 6
    logged = [m for m in checkpointing.read_metrics(tmp_path / "run") if m["step"] == step][0]
    # the full model on decoded images
    on_images = evaluation.evaluate(tmp_path / "run", "val", "latest")
    assert on_images["accuracy"] == pytest.approx(logged["val_accuracy"])
    assert on_images["loss"] == pytest.approx(logged["val_loss"], rel=1e-4)


def test_init_errors_name_the_mismatch(synthetic_root, tmp_path, tiny_port):
    path, _ = tiny_port
    config = config_with(tmp_path, synthetic_root, **{"init.checkpoint": str(path)})
    with pytest.raises(
        transfer.WeightsMismatchError, match="expects data.normalization='imagenet'"
    ):
        trainer.train_and_evaluate(config, tmp_path / "a")
    config.data.normalization = "imagenet"
    config.model.variant = "v1"
    with pytest.raises(
        transfer.WeightsMismatchError, match="holds .*'v1.5'.*the config builds .*'v1'"
    ):
        trainer.train_and_evaluate(config, tmp_path / "b")
    config.init.checkpoint = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere: neither ported weights"):
        trainer.train_and_evaluate(config, tmp_path / "c")


def test_fine_tuning_can_start_from_a_training_workdir(synthetic_root, tmp_path):
    first = config_with(tmp_path, synthetic_root, num_epochs=1)
    trainer.train_and_evaluate(first, tmp_path / "first")
    _, _, trained, _ = train_state.load_run(tmp_path / "first", "best")
    second = config_with(
        tmp_path,
        synthetic_root,
        **{"init.checkpoint": str(tmp_path / "first"), "freeze.trainable": "last_fraction"},
    )
    model, _ = train_state.build_model(second, 6)
    state = train_state.create_train_state(
        second,
        model,
        4,
        classes=tuple(json.loads((tmp_path / "first" / "run.json").read_text())["classes"]),
    )
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(trained.params)):
        np.testing.assert_array_equal(a, b)  # head included


@pytest.mark.parametrize("oversample_power", [None, 0.0])
def test_cached_feature_batches_resume_the_same_stream(tmp_path, oversample_power):
    config = config_with(tmp_path, **{"batch_size": 8, "data.oversample_power": oversample_power})
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [30, 8, 2]).astype(np.int32)
    features = {"features": rng.normal(size=(40, 5)).astype(np.float32), "label": labels}
    rows = [ip.Row(str(i), str(c), f"artist {c}", i, (), "") for i, c in enumerate(labels)]
    probs = ip.example_sampling_probabilities(rows, lambda r: (r.style,), oversample_power, False)
    stream = feature_batches.train_batches(features, config, 4, 0, probs)
    first = [next(stream) for _ in range(12)]  # 5 steps per epoch: crosses two reshuffles
    resumed = feature_batches.train_batches(features, config, 4, 7, probs)
    for expected in first[7:]:
        got = next(resumed)
        np.testing.assert_array_equal(got["image"], expected["image"])
    assert first[0]["image"].shape == (4, 2, 5)
    drawn = np.concatenate([b["label"].reshape(-1) for b in first])
    if oversample_power == 0.0:  # balanced: the 2-image class is drawn about as often as the others
        assert np.sum(drawn == 2) > 15
    else:  # plain shuffling: every image once per epoch
        epoch = np.concatenate([b["label"].reshape(-1) for b in first[:5]])
        assert np.sum(epoch == 0) == 30 and np.sum(epoch == 2) == 2
