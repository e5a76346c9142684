"""Faults: unreadable checkpoints, crash leftovers (metrics, TensorBoard, retention); the CPU
context of benchmarks."""

import logging
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from artjax import benchmarks, checkpointing, train_state, trainer
from tests.conftest import PROJECT_ROOT, make_config

TIMING = ("epoch_seconds", "train_images_per_second")


def tiny_config(root, prepared, **overrides):
    config = make_config(root, prepared)
    config.data.image_size = 48  # the CNN's four conv+pool stages need at least 46
    config.num_epochs, config.log_every_steps, config.keep_checkpoints = 3, 2, 2
    config.model.dropout_rate = 0.0
    config.data.augment_enabled = False
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def finished_run(synthetic_root, tmp_path_factory):
    """A finished 3-epoch run (checkpoints of epochs 2 and 3 kept, plus the best)."""
    root = tmp_path_factory.mktemp("reliability")
    config = tiny_config(synthetic_root, root / "prepared")
    trainer.train_and_evaluate(config, root / "run")
    return config, root / "run"


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def _damage(workdir, step, kind):
    step_dir = workdir / "checkpoints" / str(step)
    if kind == "truncated":
        for f in (step_dir / "state").rglob("*"):
            if f.is_file() and f.parent.name == "d":
                f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    elif kind == "no_metadata":
        (step_dir / "_CHECKPOINT_METADATA").unlink()
    elif kind == "empty":
        step_dir = workdir / "checkpoints" / str(step + 1000)
        step_dir.mkdir()
    return step_dir


@pytest.mark.parametrize("kind", ["truncated", "empty", "no_metadata"])
def test_an_unreadable_latest_checkpoint_is_moved_aside_and_the_previous_one_used(
    finished_run, tmp_path, kind, caplog
):
    config, run = finished_run
    workdir = _copy(run, tmp_path)
    steps = checkpointing.Checkpoints(workdir).all_steps()
    damaged = _damage(workdir, steps[-1], kind)
    with caplog.at_level(logging.WARNING):
        _, _, _, step = train_state.load_run(workdir, "latest")
    if kind == "no_metadata":  # Orbax reads the state without it: the checkpoint is still good
        assert step == steps[-1] and damaged.is_dir()
        return
    assert step == steps[-1] if kind == "empty" else step == steps[-2]
    aside = workdir / "checkpoints" / "unreadable" / damaged.name
    assert aside.is_dir() and not damaged.exists()  # moved, never deleted
    warnings = [r.getMessage() for r in caplog.records if "is unreadable" in r.getMessage()]
    assert len(warnings) == 1 and str(damaged) in warnings[0]
    if kind != "truncated":
        return
    # Training resumes from the newest readable checkpoint and finishes the run.
    config = config.copy_and_resolve_references()
    config.num_epochs = 4
    trainer.train_and_evaluate(config, workdir)
    history = checkpointing.read_metrics(workdir)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4][: len(history)] and history[-1][
        "epoch"
    ] == 4


def test_an_unreadable_best_or_step_is_a_short_error_listing_the_readable_steps(
    finished_run, tmp_path
):
    config, run = finished_run
    workdir = _copy(run, tmp_path)
    ckpt = checkpointing.Checkpoints(workdir)
    steps, best = ckpt.all_steps(), ckpt.best_step()
    _damage(workdir, best, "truncated")
    readable = [s for s in steps if s != best]
    with pytest.raises(
        checkpointing.CheckpointUnreadableError, match=rf"readable steps .*{readable}"
    ):
        train_state.load_run(workdir, "best")
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    command = [
        sys.executable,
        "-m",
        "artjax.evaluate",
        f"--workdir={workdir}",
        f"--checkpoint={best}",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    error = result.stderr[result.stderr.index("error: ") :]
    assert str(readable) in error and "Traceback" not in result.stderr
    assert len(error.strip().splitlines()) <= 4  # a few lines, no Orbax traceback
    verbose = subprocess.run(
        command + ["--verbosity=1"], env=env, capture_output=True, text=True, timeout=300
    )
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr


def _scalars(logdir, tag):
    found = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == tag:
                    found.append(event.step)
    return found


def test_a_crash_between_the_metrics_line_and_the_checkpoint_leaves_no_duplicates(
    finished_run, tmp_path, monkeypatch
):
    config, run = finished_run
    save = checkpointing.Checkpoints.save

    def killed_at_the_third_save(self, step, *args):
        if len(self.all_steps()) == 2 and step not in self.all_steps():
            raise KeyboardInterrupt  # epoch 3's metrics line is written, its checkpoint is not
        return save(self, step, *args)

    monkeypatch.setattr(checkpointing.Checkpoints, "save", killed_at_the_third_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_and_evaluate(config, tmp_path / "run")
    assert [h["epoch"] for h in checkpointing.read_metrics(tmp_path / "run")] == [1, 2, 3]
    monkeypatch.setattr(checkpointing.Checkpoints, "save", save)
    trainer.train_and_evaluate(config, tmp_path / "run")
    mine, theirs = (checkpointing.read_metrics(w) for w in (tmp_path / "run", run))
    assert [{k: v for k, v in m.items() if k not in TIMING} for m in mine] == [
        {
            k: pytest.approx(v, rel=1e-5) if isinstance(v, float) else v
            for k, v in m.items()
            if k not in TIMING
        }
        for m in theirs
    ]
    assert _scalars(tmp_path / "run" / "tensorboard", "val_accuracy") == [m["step"] for m in theirs]


def test_checkpoints_left_beyond_the_policy_are_removed_at_start(finished_run, tmp_path, caplog):
    config, run = finished_run
    workdir = _copy(run, tmp_path)
    config = config.copy_and_resolve_references()
    config.keep_checkpoints = 1
    ckpt = checkpointing.Checkpoints(workdir)
    before, best = ckpt.all_steps(), ckpt.best_step()
    ckpt.close()
    with caplog.at_level(logging.WARNING):
        trainer.train_and_evaluate(config, workdir)  # finished: nothing to train, retention applies
    after = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert after == sorted({before[-1], best})
    removed = sorted(set(before) - set(after))
    assert removed and any(
        f"removed checkpoints {removed}" in r.getMessage() for r in caplog.records
    )


def test_the_benchmark_names_the_cpu_and_its_vector_extensions():
    intel = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
    intel += "model name\t: Intel(R) Xeon(R) Platinum 8480C\n"
    intel += "flags\t\t: fpu sse avx2 avx512f amx_tile amx_bf16\n"
    assert benchmarks.cpu_description(intel) == (
        "Intel(R) Xeon(R) Platinum 8480C (family 6 model 143; avx2 avx512f amx_tile amx_bf16)"
    )
    zen3 = "model name\t: AMD EPYC 7B13\ncpu family\t: 25\nmodel\t\t: 1\nflags\t\t: fpu avx2 fma\n"
    assert benchmarks.cpu_description(zen3) == "AMD EPYC 7B13 (family 25 model 1; avx2)"
    assert benchmarks.cpu_description("").startswith("unknown CPU")
