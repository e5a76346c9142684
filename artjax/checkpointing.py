"""Orbax checkpoints in a run's workdir, and the run record that makes evaluation need only the
workdir.

workdir/
  run.json          config, class names, normalization, model spec, data summary (written at start)
  checkpoints/<step>/{state, run}   every `checkpoint_every_epochs`; the latest `keep` and the best
  checkpoints/unreadable/<step>     checkpoints found unreadable (truncated, empty), moved aside
  metrics.jsonl     one line per epoch (train/val loss and accuracy)
  tensorboard/      the same as TensorBoard events

A cross-validation workdir (artjax.cv) holds cv.json, fold_<k>/ (each an ordinary run workdir) and
the CV report.
"""

from __future__ import annotations

import json
import logging
import pathlib
import shutil

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

RUN_FILE = "run.json"
UNREADABLE_DIR = "unreadable"
# TensorStore's status codes for files it cannot read (truncated, missing, corrupt); Orbax passes
# them on as ValueErrors, as it does a state of another structure (CheckpointMismatchError).
READ_ERRORS = ("OUT_OF_RANGE", "DATA_LOSS", "NOT_FOUND", "UNAVAILABLE", "FAILED_PRECONDITION")
METRICS_FILE = "metrics.jsonl"
# What must match for a workdir to be resumed or evaluated with a config.
IDENTITY_KEYS = ("model", "classes", "image_size", "normalization")


class CheckpointMismatchError(ValueError):
    pass


class CheckpointUnreadableError(RuntimeError):
    """A checkpoint's files cannot be read (truncated, missing, empty step directory)."""


class WorkdirWriteError(RuntimeError):
    """The workdir cannot be written (not a directory, no permission, disk full)."""


CV_FILE = "cv.json"  # marks a cross-validation workdir (artjax.cv) and lists its fold workdirs


def is_cv_workdir(workdir) -> bool:
    return (pathlib.Path(workdir) / CV_FILE).is_file()


def fold_workdirs(cv_workdir) -> list[pathlib.Path]:
    """The fold workdirs of a cross-validation workdir, in fold order."""
    cv_workdir = pathlib.Path(cv_workdir)
    record = json.loads((cv_workdir / CV_FILE).read_text())
    return [cv_workdir / name for name in record["fold_workdirs"]]


def read_run(workdir) -> dict:
    path = pathlib.Path(workdir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no run record; is {workdir} a training workdir?")
    return json.loads(path.read_text())


def write_run(workdir, run: dict) -> None:
    """Writes run.json, or checks that an existing one describes the same model and data."""
    path = pathlib.Path(workdir) / RUN_FILE
    run = json.loads(json.dumps(run, default=str))  # compare as stored (tuples become lists)
    if path.is_file():
        old = json.loads(path.read_text())
        diffs = [k for k in IDENTITY_KEYS if old.get(k) != run.get(k)]
        if diffs:
            detail = "; ".join(
                f"{k}: checkpoint {old.get(k)!r} vs config {run.get(k)!r}" for k in diffs
            )
            raise CheckpointMismatchError(
                f"{workdir} holds a run that does not match this config ({detail}). "
                "Use another --workdir; nothing was overwritten."
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run, indent=2, default=str))
    except OSError as e:
        raise WorkdirWriteError(f"{workdir}: cannot write the run's workdir ({e})") from e


def read_metrics(workdir) -> list[dict]:
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(workdir, step: int) -> list[dict]:
    """Cuts metrics.jsonl back to the lines of steps <= `step` (a run killed after logging an epoch
    but before its checkpoint logs that epoch again when it resumes); returns the dropped lines."""
    path = pathlib.Path(workdir) / METRICS_FILE
    rows = read_metrics(workdir)
    kept = [r for r in rows if r["step"] <= step]
    if len(kept) < len(rows):
        partial = path.with_suffix(".jsonl.partial")
        partial.write_text("".join(json.dumps(r) + "\n" for r in kept))
        partial.replace(path)
    return rows[len(kept) :]


class BestInMetricsFile:
    """An Orbax preservation policy: the checkpoint with the highest `metric`, the latest of equals
    (as `Checkpoints.best_step`). Orbax keeps no metrics of the checkpoints that an earlier process
    saved, and its BestN keeps every such checkpoint; metrics.jsonl has them all."""

    def __init__(self, workdir, metric: str):
        self.workdir, self.metric = workdir, metric

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        del context
        logged = {m["step"]: m[self.metric] for m in read_metrics(self.workdir) if self.metric in m}
        scored = [
            ((info.metrics or {}).get(self.metric, logged.get(info.step)), info.step)
            for info in checkpoints
        ]
        known = [(score, step) for score, step in scored if score is not None]
        best = max(known)[1] if known else None
        return [info.step == best for info in checkpoints]


class Checkpoints:
    """Keeps the latest `keep` checkpoints plus the best one by `best_metric` (higher is better)."""

    def __init__(self, workdir, keep: int = 2, best_metric: str = "val_accuracy"):
        self.workdir = pathlib.Path(workdir).absolute()
        self.directory = self.workdir / "checkpoints"
        self.keep, self.best_metric = keep, best_metric
        policy = checkpoint_managers.AnyPreservationPolicy(
            [
                checkpoint_managers.LatestN(keep),
                BestInMetricsFile(self.workdir, best_metric),
            ]
        )
        if jax.process_index() == 0:
            for empty in self._empty_step_dirs():  # before Orbax lists them as steps
                self._set_aside(empty, "an empty step directory")
        _all_processes_reach("artjax: checkpoints scanned")
        self.manager = ocp.CheckpointManager(
            self.directory,
            item_names=("state", "run"),
            options=ocp.CheckpointManagerOptions(preservation_policy=policy, create=True),
        )

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The kept step with the highest `best_metric` in metrics.jsonl."""
        kept = set(self.all_steps())
        scored = [
            (m[self.best_metric], m["step"])
            for m in read_metrics(self.workdir)
            if m["step"] in kept and self.best_metric in m
        ]
        return max(scored)[1] if scored else self.latest_step()

    def resolve(self, which: str) -> int:
        """'latest', 'best' or a step number -> an existing step."""
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"{self.workdir}: no checkpoints")
        step = {"latest": self.latest_step, "best": self.best_step}.get(which, lambda: None)()
        if step is None:
            if not str(which).isdigit() or int(which) not in steps:
                raise ValueError(
                    f"checkpoint {which!r} is not 'best', 'latest' or one of the steps {steps}"
                )
            step = int(which)
        return step

    def save(self, step: int, state, run: dict, metrics: dict) -> None:
        """Saves asynchronously; a failed write (disk full, no permission) is an error that says
        which checkpoint is still the latest good one."""
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), run=ocp.args.JsonSave(run)
                ),
                metrics={k: float(v) for k, v in metrics.items()},
            )
        except OSError as e:
            previous = [s for s in self.all_steps() if s != step]
            kept = f"step {previous[-1]} is the latest checkpoint" if previous else "no checkpoint"
            raise WorkdirWriteError(
                f"{self.directory}: the checkpoint of step {step} could not be written ({e}); "
                f"{kept}, and resuming starts there"
            ) from e

    def restore(self, step: int, like=None):
        """Restores the state saved at `step` into the structure (and shardings) of `like`, or as a
        plain tree of arrays without it (to take weights from another run)."""
        abstract = None if like is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )
        except ValueError as e:
            if str(e).startswith(READ_ERRORS):
                raise CheckpointUnreadableError(
                    f"{self.directory / str(step)}: unreadable ({first_line(e)})"
                ) from e
            raise CheckpointMismatchError(
                f"{self.workdir}: the checkpoint at step {step} does not fit the state this config "
                f"builds (another model, optimizer or class count?). Orbax says: {str(e)[:2000]}"
            ) from e
        except Exception as e:  # Orbax and TensorStore raise many kinds for damaged files
            raise CheckpointUnreadableError(
                f"{self.directory / str(step)}: unreadable ({first_line(e)})"
            ) from e
        return restored["state"]

    def _empty_step_dirs(self) -> list[pathlib.Path]:
        if not self.directory.is_dir():
            return []
        return [p for p in self.directory.iterdir() if p.name.isdigit() and not any(p.iterdir())]

    def _set_aside(self, source: pathlib.Path, why: str) -> pathlib.Path:
        target = self.directory / UNREADABLE_DIR / source.name
        suffix = 1
        while target.exists():
            target, suffix = self.directory / UNREADABLE_DIR / f"{source.name}.{suffix}", suffix + 1
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
        logging.warning("checkpoint %s is unreadable (%s); moved to %s", source, why, target)
        return target

    def move_aside(self, step: int, error: Exception) -> pathlib.Path:
        """Moves an unreadable step directory to checkpoints/unreadable/<step> (never deletes it)
        with one warning naming it and the error's first line."""
        target = self.directory / UNREADABLE_DIR / str(step)
        if jax.process_index() == 0:  # every process finds it unreadable; one moves it
            target = self._set_aside(self.directory / str(step), first_line(error))
        _all_processes_reach(f"artjax: checkpoint {step} moved aside")
        self.manager.reload()
        return target

    def restore_newest_readable(self, like=None) -> tuple[int | None, object]:
        """(step, state) of the newest readable checkpoint, moving unreadable newer ones aside;
        (None, None) when none is readable. A checkpoint of another model is still an error."""
        while (step := self.latest_step()) is not None:
            try:
                return step, self.restore(step, like)
            except CheckpointUnreadableError as e:
                self.move_aside(step, e.__cause__ or e)
        return None, None

    def readable_steps(self, like=None) -> list[int]:
        found = []
        for step in self.all_steps():
            try:
                self.restore(step, like)
                found.append(step)
            except (CheckpointUnreadableError, CheckpointMismatchError):
                pass
        return found

    def restore_named(self, which: str, like=None) -> tuple[int, object]:
        """(step, state) of 'latest' (the newest readable one), 'best' or a step number. An
        unreadable 'best' or step is an error that lists the readable steps."""
        if which == "latest":
            step, state = self.restore_newest_readable(like)
            if step is None:
                raise CheckpointUnreadableError(f"{self.directory}: no readable checkpoint")
            return step, state
        step = self.resolve(which)
        try:
            return step, self.restore(step, like)
        except CheckpointUnreadableError as e:
            readable = self.readable_steps(like)
            raise CheckpointUnreadableError(
                f"checkpoint {which!r} (step {step}) is unreadable: "
                f"{first_line(e.__cause__ or e)}\n"
                f"readable steps of {self.workdir}: {readable or 'none'} "
                "(--checkpoint latest takes the newest readable one)"
            ) from e

    def apply_retention(self) -> list[int]:
        """Removes checkpoints beyond the latest `keep` and the best (by metrics.jsonl), as the
        policy would have on save: runs killed before their next save leave such checkpoints."""
        steps = self.all_steps()
        keep = set(steps[-self.keep :]) if self.keep else set()
        best = self.best_step()
        if best is not None:
            keep.add(best)
        removed = [s for s in steps if s not in keep]
        for step in removed:
            self.manager.delete(step)
        if removed:
            logging.warning(
                "removed checkpoints %s of %s: beyond keep_checkpoints=%d and the best (step %s)",
                removed,
                self.directory,
                self.keep,
                best,
            )
        return removed

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.close()


def resolve_step(workdir, which: str) -> int:
    """'best', 'latest' or a step number -> the workdir's step it names."""
    ckpt = Checkpoints(workdir)
    try:
        return ckpt.resolve(which)
    finally:
        ckpt.close()


def _all_processes_reach(name: str) -> None:
    """A barrier in a multi-process run (no-op in one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def first_line(error: Exception, limit: int = 300) -> str:
    """An exception's first line, shortened (Orbax's and TensorStore's run to pages)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[:limit] + " ..."
