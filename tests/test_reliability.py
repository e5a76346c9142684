"""Faults: unreadable checkpoints, crash leftovers (metrics, TensorBoard, retention); the CPU
context of benchmarks."""

import logging
import os
import shutil

import jax
import numpy as np
import pytest
import tensorflow as tf

from artjax import benchmarks, checkpointing, train_state, trainer
from tests.conftest import PROJECT_ROOT, copied_run, make_config, run_command
from tests.conftest import three_epoch_config as tiny_config

# One pytest worker runs this module's tests, so its module-scoped fixtures are built once.
# The session's finished run (tests/conftest.py) is built once on the worker of this group.
pytestmark = pytest.mark.xdist_group("finished_run")

TIMING = ("epoch_seconds", "train_images_per_second")


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
    workdir = copied_run(run, tmp_path)
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
    workdir = copied_run(run, tmp_path)
    ckpt = checkpointing.Checkpoints(workdir)
    steps, best = ckpt.all_steps(), ckpt.best_step()
    _damage(workdir, best, "truncated")
    readable = [s for s in steps if s != best]
    with pytest.raises(
        checkpointing.CheckpointUnreadableError, match=rf"readable steps .*{readable}"
    ):
        train_state.load_run(workdir, "best")
    command = ["artjax.evaluate", f"--workdir={workdir}", f"--checkpoint={best}"]
    result = run_command(command, timeout=300)
    assert result.returncode == 1
    error = result.stderr[result.stderr.index("error: ") :]
    assert str(readable) in error and "Traceback" not in result.stderr
    assert len(error.strip().splitlines()) <= 4  # a few lines, no Orbax traceback
    verbose = run_command(command + ["--verbosity=1"], timeout=300)
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


def test_retention_after_a_fallback_keeps_the_latest_checkpoints_and_the_best(
    finished_run, tmp_path
):
    # The newest checkpoint is unreadable and moved aside; the resumed run saves three more.
    config, run = finished_run
    workdir = copied_run(run, tmp_path)
    _damage(workdir, checkpointing.Checkpoints(workdir).all_steps()[-1], "truncated")
    config = config.copy_and_resolve_references()
    config.num_epochs = 6
    trainer.train_and_evaluate(config, workdir)
    kept = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    history = checkpointing.read_metrics(workdir)
    # the highest validation accuracy of the run, the latest of equals
    best = max((h["val_accuracy"], h["step"]) for h in history)[1]
    every = sorted(h["step"] for h in history)
    assert kept == sorted({*every[-config.keep_checkpoints :], best})


def test_checkpoints_left_beyond_the_policy_are_removed_at_start(finished_run, tmp_path, caplog):
    config, run = finished_run
    workdir = copied_run(run, tmp_path)
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


KILLED_RUN = """
import os, signal, sys
from artjax import checkpointing, hooks, trainer
from tests.conftest import three_epoch_config as tiny_config

config = tiny_config(sys.argv[1], sys.argv[2])
moment, step_to_kill = sys.argv[4], int(sys.argv[5])
kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
save = checkpointing.Checkpoints.save


def save_then_die(self, step, *args):  # the save is under way (Orbax writes asynchronously)
    save(self, step, *args)
    if step == step_to_kill:
        kill()


class DieMidEpoch(hooks.Hook):
    def after_step(self, step, metrics):
        if step == step_to_kill:
            kill()


if moment == "save":
    checkpointing.Checkpoints.save = save_then_die
extra = [DieMidEpoch()] if moment == "step" else []
trainer.train_and_evaluate(config, sys.argv[3], extra_hooks=extra)
"""


def test_kill_9_mid_epoch_and_during_a_save_then_resume_equals_the_uninterrupted_run(
    finished_run, tmp_path
):
    config, run = finished_run
    steps_per_epoch = checkpointing.read_metrics(run)[0]["step"]
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    workdir = tmp_path / "run"
    for moment, step in (("step", steps_per_epoch + 3), ("save", 2 * steps_per_epoch)):
        args = [config.data.root, config.data.prepared_dir, str(workdir), moment, str(step)]
        killed = run_command(args, code=KILLED_RUN, env=env, timeout=300)
        assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL, not an error
    trainer.train_and_evaluate(config, workdir)
    mine = train_state.load_run(workdir, "latest")[2]
    theirs = train_state.load_run(run, "latest")[2]
    for a, b in zip(jax.tree.leaves(mine.params), jax.tree.leaves(theirs.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [m["epoch"] for m in checkpointing.read_metrics(workdir)] == [1, 2, 3]


def test_a_full_disk_during_a_save_is_a_clear_error_and_the_last_checkpoint_stays(
    synthetic_root, tmp_path, monkeypatch
):
    import errno

    import orbax.checkpoint as ocp

    config = tiny_config(synthetic_root, tmp_path / "prepared", num_epochs=2)
    save = ocp.CheckpointManager.save

    def disk_full_at_the_second_save(self, step, *args, **kwargs):
        if self.all_steps():
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", disk_full_at_the_second_save)
    with pytest.raises(
        checkpointing.WorkdirWriteError, match=r"No space left.*step \d+ is the latest"
    ):
        trainer.train_and_evaluate(config, tmp_path / "run")
    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    first = checkpointing.read_metrics(tmp_path / "run")[0]["step"]
    assert train_state.load_run(tmp_path / "run", "latest")[3] == first  # still readable
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(checkpointing.WorkdirWriteError, match="file/run: cannot write"):
        trainer.train_and_evaluate(config, tmp_path / "file" / "run")


def test_prepare_clean_removes_copies_that_match_no_download(synthetic_root, tmp_path):
    from artjax.data import best_artworks
    from artjax.data import input_pipeline as ip

    download = tmp_path / "download"
    shutil.copytree(synthetic_root, download)
    config = make_config(download, tmp_path / "prepared")
    ip.prepare_data(config.data, 0)
    old = best_artworks.prepared_copies(tmp_path / "prepared")
    assert [c.stale for c in old] == [""] and old[0].source_root == str(download.absolute())
    shutil.copytree(old[0].path, old[0].path.parent / "1.0.0")  # an older builder version
    extra = download / "images" / "Synthetic_Cubism_Painter_1" / "Synthetic_Cubism_Painter_1_99.jpg"
    shutil.copy(next(extra.parent.iterdir()), extra)  # the download changed
    ip.prepare_data(config.data, 0)
    copies = best_artworks.prepared_copies(tmp_path / "prepared")
    assert sorted(bool(c.stale) for c in copies) == [False, True, True]
    removed = best_artworks.clean_prepared(tmp_path / "prepared")
    assert sorted(c.path for c in removed) == sorted(c.path for c in copies if c.stale)
    assert all(not c.path.exists() for c in removed)
    (current,) = best_artworks.prepared_copies(tmp_path / "prepared")
    assert not current.stale and current.path.exists()
    assert "Synthetic_Cubism_Painter_1/Synthetic_Cubism_Painter_1_99.jpg" in {
        r.filename for r in ip.prepare_data(config.data, 0).rows
    }
