"""Models, the pmap'd steps, checkpoints, resume, evaluation and the CLIs."""

import copy
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import jax_utils
from sklearn import metrics as skm

from artjax import checkpointing, evaluation, hooks, models, steps, train_state, trainer
from artjax.serving.inference import Predictor
from tests.conftest import PROJECT_ROOT, copied_run, one_step, run_command, tiny_config, xla_flags


@pytest.mark.parametrize(
    "model_overrides",
    [
        {"model.name": "cnn"},
        {"model.name": "resnet", "model.stage_sizes": (1, 1), "model.width": 4},
    ],
)
def test_four_devices_equal_one_device(tmp_path, model_overrides):
    # SGD: the update is linear in the gradient, so float32 summation order stays at round-off
    # (Adam's first step divides the gradient by its own magnitude and amplifies it).
    config = tiny_config(
        "", tmp_path, **model_overrides, **{"optimizer.name": "sgd", "optimizer.learning_rate": 0.1}
    )
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.normal(size=(8, 48, 48, 3)).astype(np.float32),
        "label": rng.integers(0, 6, 8).astype(np.int32),
    }
    one, m1 = one_step(config, batch, jax.devices()[:1])
    four, m4 = one_step(config, batch, jax.devices()[:4])
    np.testing.assert_allclose(m1["loss"][0], m4["loss"][0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(one.batch_stats), jax.tree.leaves(four.batch_stats)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    if model_overrides["model.name"] == "resnet":
        # BatchNorm statistics were synchronized, not absent
        assert jax.tree.leaves(four.batch_stats)


def test_the_stepped_state_does_not_compile_the_step_again(tmp_path):
    # steps.replicate lays the state out as the pmap'd step lays out its outputs: one trace (and
    # compilation) serves the first step and every later one.
    config = tiny_config("", tmp_path)
    model = models.create_model(config.model, 6, axis_name=steps.AXIS)
    state = steps.replicate(train_state.create_train_state(config, model, steps_per_epoch=4))
    traces = []

    def counted(state, batch):
        traces.append(1)
        return steps.train_step(state, batch, class_weights=jnp.ones(6))

    p_step = jax.pmap(counted, axis_name=steps.AXIS, donate_argnums=(0,))
    rng = np.random.default_rng(0)
    count = jax.local_device_count()
    batch = {
        "image": rng.normal(size=(count, 2, 48, 48, 3)).astype(np.float32),
        "label": rng.integers(0, 6, (count, 2)).astype(np.int32),
    }
    for _ in range(3):
        state, _ = p_step(state, batch)
    assert len(traces) == 1
    # unreplicate: device 0's copy of every leaf, as host arrays (0-d ones too)
    host = steps.unreplicate(state)
    assert host.step.shape == () and int(host.step) == 3
    for found, replicated in zip(jax.tree.leaves(host), jax.tree.leaves(state)):
        assert isinstance(found, np.ndarray)
        np.testing.assert_array_equal(found, np.asarray(replicated)[0])


def test_loss_falls_and_the_run_is_evaluated(synthetic_root, tmp_path):
    config = tiny_config(synthetic_root, tmp_path, num_epochs=6)
    config.optimizer.learning_rate = 3e-3
    trainer.train_and_evaluate(config, tmp_path / "run")
    history = checkpointing.read_metrics(tmp_path / "run")
    assert len(history) == 6
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert history[-1]["train_accuracy"] > 0.5

    report = evaluation.evaluate(tmp_path / "run", "test", "best")
    out = tmp_path / "run" / "eval_test"
    for name in (
        "report.json",
        "predictions.csv",
        "confusion_matrix.png",
        "classification_report.png",
        "curves.png",
        "per_class_accuracy.md",
    ):
        assert (out / name).stat().st_size > 0, name
    import pandas as pd

    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == sum(checkpointing.read_run(tmp_path / "run")["counts"]["test"])
    assert report["accuracy"] == pytest.approx(
        skm.accuracy_score(predictions["true"], predictions["predicted"])
    )
    assert report["macro"]["f1"] == pytest.approx(
        skm.f1_score(predictions["true"], predictions["predicted"], average="macro")
    )
    assert (
        report["confusion_matrix"]
        == skm.confusion_matrix(
            predictions["true"], predictions["predicted"], labels=list(report["per_class"])
        ).tolist()
    )
    assert json.loads((out / "report.json").read_text())["synthetic"] is True

    predictor = Predictor(tmp_path / "run")
    image = next((synthetic_root / "images").rglob("*Byzantine*_1.jpg"))
    ranked = predictor.predict_file(image, top_k=6)
    assert sorted(s for s, _ in ranked) == sorted(predictor.classes)
    assert sum(p for _, p in ranked) == pytest.approx(1.0, abs=1e-5)
    (tmp_path / "bad.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="bad.jpg: not a readable image"):
        predictor.predict_file(tmp_path / "bad.jpg")


def test_checkpoint_round_trip_is_exact(synthetic_root, tmp_path):
    config = tiny_config(
        synthetic_root,
        tmp_path,
        **{"model.name": "resnet", "model.stage_sizes": (1,), "model.width": 4},
    )
    model = models.create_model(config.model, 6)
    state = train_state.create_train_state(config, model, 3)
    state = state.replace(params=jax.tree.map(lambda p: p + 0.5, state.params), step=jnp.asarray(7))
    ckpt = checkpointing.Checkpoints(tmp_path / "w")
    ckpt.save(7, state, {"x": 1}, {"val_accuracy": 0.5})
    ckpt.wait()
    restored = ckpt.restore(7, train_state.create_train_state(config, model, 3))
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ckpt.close()


def test_stop_and_resume_equals_uninterrupted_and_keeps_best(synthetic_root, tmp_path):
    config = tiny_config(synthetic_root, tmp_path, num_epochs=2, keep_checkpoints=1)
    config.data.augment_enabled = True
    config.model.dropout_rate = 0.3  # exercises the per-step dropout RNG
    full = trainer.train_and_evaluate(config, tmp_path / "full")
    trainer.train_and_evaluate(config, tmp_path / "resumed", extra_hooks=[hooks.StopAfterEpoch(1)])
    assert len(checkpointing.read_metrics(tmp_path / "resumed")) == 1
    resumed = trainer.train_and_evaluate(config, tmp_path / "resumed")
    assert resumed["val_loss"] == pytest.approx(full["val_loss"], rel=1e-5)
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-5)
    states = [train_state.load_run(tmp_path / name, "latest")[2] for name in ("full", "resumed")]
    for a, b in zip(jax.tree.leaves(states[0].params), jax.tree.leaves(states[1].params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    ckpt = checkpointing.Checkpoints(tmp_path / "full", keep=1)
    history = checkpointing.read_metrics(tmp_path / "full")
    best = max(history, key=lambda h: (h["val_accuracy"], h["step"]))
    assert ckpt.latest_step() == history[-1]["step"]
    assert best["step"] in ckpt.all_steps() and len(ckpt.all_steps()) <= 2


@pytest.fixture(scope="module")
def one_epoch_run(synthetic_root, tmp_path_factory):
    """(config, workdir) of a finished one-epoch run of the tiny CNN; tests work on copies."""
    root = tmp_path_factory.mktemp("one_epoch")
    config = tiny_config(synthetic_root, root, num_epochs=1)
    trainer.train_and_evaluate(config, root / "run")
    return config, root / "run"


def _copied(one_epoch_run, tmp_path):
    """A copy of the one-epoch run's workdir, and a config of its own to change."""
    config, workdir = one_epoch_run
    return copy.deepcopy(config), copied_run(workdir, tmp_path)


@pytest.mark.xdist_group("one_epoch")
def test_mismatching_workdir_is_refused(one_epoch_run, tmp_path):
    config, workdir = _copied(one_epoch_run, tmp_path)
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    config.data.classes = "Cubism,Pop Art"
    with pytest.raises(checkpointing.CheckpointMismatchError, match="classes"):
        trainer.train_and_evaluate(config, workdir)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


@pytest.mark.xdist_group("one_epoch")
def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(one_epoch_run, tmp_path):
    config, workdir = _copied(one_epoch_run, tmp_path)
    config.num_epochs = 2
    config.optimizer.learning_rate = 1e38  # Adam steps by about lr: the next forward overflows
    with pytest.raises(hooks.NonFiniteLossError, match=r"at step \d+ \(epoch 2\)"):
        trainer.train_and_evaluate(config, workdir)
    ckpt = checkpointing.Checkpoints(workdir)
    assert ckpt.all_steps() == [checkpointing.read_metrics(workdir)[0]["step"]]
    config.optimizer.name = "sgd"  # a different optimizer state cannot be restored: clear error
    with pytest.raises(checkpointing.CheckpointMismatchError, match="does not fit the state"):
        trainer.train_and_evaluate(config, workdir)


@pytest.mark.xdist_group("one_epoch")
def test_restore_onto_another_device_count(one_epoch_run):
    _, workdir = one_epoch_run  # evaluating adds only its eval_val/ report
    env = dict(
        os.environ,
        PYTHONPATH=str(PROJECT_ROOT),
        XLA_FLAGS=xla_flags(1),
    )
    code = (
        "import jax; from artjax import evaluation; assert jax.local_device_count() == 1; "
        f"r = evaluation.evaluate({str(workdir)!r}, 'val', 'latest'); print(r['accuracy'])"
    )
    one_device = run_command([], code=code, env=env, timeout=300)  # its JAX backend: 1 device
    assert one_device.returncode == 0, one_device.stderr[-2000:]
    four_devices = evaluation.evaluate(workdir, "val", "latest")
    assert float(one_device.stdout.strip().splitlines()[-1]) == pytest.approx(
        four_devices["accuracy"]
    )


def _cli(*args, cwd):
    return run_command(args, cwd=cwd)


def test_cli_train_evaluate_predict(synthetic_root, tmp_path):
    flags = [
        "--config",
        str(PROJECT_ROOT / "experiments/cnn.py:weighted,synthetic"),
        f"--config.data.root={synthetic_root}",
        f"--config.data.prepared_dir={tmp_path / 'prepared'}",
        "--config.data.image_size=48",
        "--config.num_epochs=1",
        "--config.batch_size=8",
    ]
    result = _cli(
        "artjax.train",
        *flags,
        "--config.profile_start_step=2",
        "--config.profile_steps=2",
        # unreachable: every prediction is flagged uncertain (the threshold is then 1.0)
        "--config.calibration.confident_accuracy=1.01",
        f"--workdir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the jax.profiler trace
    assert any(p.is_file() for p in (tmp_path / "run" / "profile").rglob("*"))
    assert "epoch 1: train_loss" in result.stdout + result.stderr
    assert (tmp_path / "run" / "tensorboard").is_dir()
    run = checkpointing.read_run(tmp_path / "run")
    assert run["config"]["class_weighted"] is True and run["synthetic"] is True
    # calibrated on validation at the end of training, for the best checkpoint
    fitted = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert fitted["step"] == checkpointing.resolve_step(tmp_path / "run", "best")
    assert fitted["uncertain_below"] == 1.0 and fitted["nll_after"] <= fitted["nll_before"]
    result = _cli("artjax.evaluate", f"--workdir={tmp_path / 'run'}", "--split=val", cwd=tmp_path)
    assert result.returncode == 0 and "accuracy" in result.stdout, result.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "eval_val" / "report.json").read_text())
    assert report["calibration"]["temperature"] == pytest.approx(fitted["temperature"])
    assert report["calibration"]["nll_calibrated"] == pytest.approx(fitted["nll_after"], rel=1e-4)
    image = next((synthetic_root / "images").rglob("*.jpg"))
    result = _cli("artjax.predict", f"--workdir={tmp_path / 'run'}", str(image), cwd=tmp_path)
    assert result.returncode == 0 and str(image) in result.stdout, result.stderr[-3000:]
    assert "[uncertain: top probability below 1.000]" in result.stdout
    result = _cli(
        "artjax.train",
        *flags,
        "--config.optimizer.nme=sgd",
        f"--workdir={tmp_path / 'x'}",
        cwd=tmp_path,
    )
    assert (
        result.returncode != 0
        and "optimizer.name" in result.stderr
        and "Valid keys" in result.stderr
    )


@pytest.mark.parametrize("normalize", [True, False])
def test_class_weighted_loss_is_the_weighted_mean_or_keras_semantics(tmp_path, normalize):
    import optax

    config = tiny_config("", tmp_path, **{"optimizer.name": "sgd", "optimizer.learning_rate": 0.0})
    model = models.create_model(config.model, 6, axis_name=steps.AXIS)
    state = train_state.create_train_state(config, model, steps_per_epoch=4)
    rng = np.random.default_rng(3)
    images = rng.normal(size=(8, 48, 48, 3)).astype(np.float32)
    labels = np.array([0, 0, 0, 0, 0, 1, 2, 5], np.int32)
    weights = jnp.array([0.3, 1.0, 2.0, 1.0, 1.0, 15.0])
    p_step = jax.pmap(
        functools.partial(steps.train_step, class_weights=weights, normalize_weights=normalize),
        axis_name=steps.AXIS,
        devices=jax.devices()[:4],
    )
    _, metrics = p_step(
        jax_utils.replicate(state, jax.devices()[:4]),
        {"image": images.reshape(4, 2, 48, 48, 3), "label": labels.reshape(4, 2)},
    )
    ce = optax.softmax_cross_entropy_with_integer_labels(
        model.apply({"params": state.params}, images), labels
    )
    w = weights[labels]
    expected = jnp.sum(w * ce) / (jnp.sum(w) if normalize else len(labels))
    np.testing.assert_allclose(metrics["loss"][0], expected, rtol=1e-5)


def test_mixup_is_the_cross_entropy_of_mixed_inputs_against_mixed_targets(tmp_path):
    import optax

    config = tiny_config("", tmp_path, **{"optimizer.name": "sgd", "optimizer.learning_rate": 0.0})
    model = models.create_model(config.model, 6, axis_name=steps.AXIS)
    state = train_state.create_train_state(config, model, steps_per_epoch=4)
    rng = np.random.default_rng(3)
    images = rng.normal(size=(4, 2, 48, 48, 3)).astype(np.float32)
    labels = rng.integers(0, 6, (4, 2)).astype(np.int32)
    p_step = jax.pmap(
        functools.partial(steps.train_step, class_weights=jnp.ones(6), mixup_alpha=0.4),
        axis_name=steps.AXIS,
        devices=jax.devices()[:4],
    )
    _, metrics = p_step(
        steps.replicate(state, jax.devices()[:4]), {"image": images, "label": labels}
    )
    losses = []
    for device in range(4):  # each device's pairs, from the step's key as train_step derives it
        key = jax.random.fold_in(jax.random.fold_in(state.rng, 0), device)
        partner, weight = steps.mixup(jax.random.fold_in(key, steps.MIXUP_STREAM), 2, 0.4)
        w = np.asarray(weight)[:, None]
        mixed = np.einsum("b,bhwc->bhwc", w[:, 0], images[device])
        mixed += np.einsum("b,bhwc->bhwc", 1 - w[:, 0], images[device][np.asarray(partner)])
        one_hot = np.eye(6)[labels[device]]
        targets = w * one_hot + (1 - w) * one_hot[np.asarray(partner)]
        logits = model.apply({"params": state.params}, mixed)
        losses.append(optax.softmax_cross_entropy(logits, targets))
    np.testing.assert_allclose(metrics["loss"][0], np.mean(losses), rtol=1e-5)


def test_mixup_pairs_a_permutation_at_beta_distributed_weights():
    partner, weight = steps.mixup(jax.random.PRNGKey(0), 20000, 0.4)
    assert sorted(np.asarray(partner).tolist()) == list(range(20000))
    # Beta(0.4, 0.4): mean 1/2, variance 1 / (4 (2 * 0.4 + 1)) = 0.1389
    assert float(np.mean(weight)) == pytest.approx(0.5, abs=0.01)
    assert float(np.var(weight)) == pytest.approx(1 / (4 * 1.8), abs=0.005)
    x = np.arange(12.0).reshape(4, 3)
    found = steps.mix(jnp.asarray(x), jnp.array([1, 0, 3, 2]), jnp.array([1.0, 0.0, 0.25, 0.5]))
    expected = [x[0], x[0], 0.25 * x[2] + 0.75 * x[3], 0.5 * x[3] + 0.5 * x[2]]
    np.testing.assert_allclose(found, expected)


def test_multi_view_evaluation_is_the_mean_of_the_views_logits(tmp_path):
    overrides = {"model.name": "resnet", "model.stage_sizes": (1,), "model.width": 4}
    config = tiny_config("", tmp_path, **overrides)
    model = models.create_model(config.model, 6, axis_name=steps.AXIS)
    state = train_state.create_train_state(config, model, steps_per_epoch=1)
    rng = np.random.default_rng(0)
    views = rng.normal(size=(8, 3, 32, 32, 3)).astype(np.float32)  # 8 paintings, 3 views each
    batch = {
        "image": views.reshape(4, 2, 3, 32, 32, 3),
        "label": rng.integers(0, 6, (4, 2)).astype(np.int32),
        "mask": np.ones((4, 2), np.int32),
    }
    p_eval = jax.pmap(steps.eval_step, axis_name=steps.AXIS)
    logits, _ = p_eval(jax_utils.replicate(state), batch)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    per_view = [model.apply(variables, views[:, v], train=False) for v in range(3)]
    np.testing.assert_allclose(
        np.asarray(logits).reshape(8, 6), np.mean(per_view, 0), rtol=1e-5, atol=1e-6
    )
    # a frozen backbone's cached views: the head's logits, averaged the same way
    head = models.head_apply(model)
    features = np.asarray(models.features_fn(model)(variables, views))  # [8, 3, D]
    found = steps.view_mean_logits(head, variables, features)
    expected = np.mean([head(variables, features[:, v], train=False) for v in range(3)], 0)
    np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(found, np.mean(per_view, 0), rtol=1e-4, atol=1e-5)
