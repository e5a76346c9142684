"""Orbax checkpoints in a run's workdir, and the run record that makes evaluation need only the
workdir.

workdir/
  run.json          config, class names, normalization, model spec, data summary (written at start)
  checkpoints/<step>/{state, run}   every `checkpoint_every_epochs`; the latest `keep` and the best
  metrics.jsonl     one line per epoch (train/val loss and accuracy)
  tensorboard/      the same as TensorBoard events

A cross-validation workdir (artjax.cv) holds cv.json, fold_<k>/ (each an ordinary run workdir) and
the CV report.
"""

from __future__ import annotations

import json
import pathlib

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
# What must match for a workdir to be resumed or evaluated with a config.
IDENTITY_KEYS = ("model", "classes", "image_size", "normalization")


class CheckpointMismatchError(ValueError):
    pass


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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=2, default=str))


def read_metrics(workdir) -> list[dict]:
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Checkpoints:
    """Keeps the latest `keep` checkpoints plus the best one by `best_metric` (higher is better)."""

    def __init__(self, workdir, keep: int = 2, best_metric: str = "val_accuracy"):
        self.workdir = pathlib.Path(workdir).absolute()
        self.best_metric = best_metric
        policy = checkpoint_managers.AnyPreservationPolicy(
            [
                checkpoint_managers.LatestN(keep),
                # keeps the highest
                checkpoint_managers.BestN(get_metric_fn=lambda m: m[best_metric], n=1),
            ]
        )
        self.manager = ocp.CheckpointManager(
            self.workdir / "checkpoints",
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
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), run=ocp.args.JsonSave(run)),
            metrics={k: float(v) for k, v in metrics.items()},
        )

    def restore(self, step: int, like=None):
        """Restores the state saved at `step` into the structure (and shardings) of `like`, or as a
        plain tree of arrays without it (to take weights from another run)."""
        abstract = None if like is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self.manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )
        except ValueError as e:
            raise CheckpointMismatchError(
                f"{self.workdir}: the checkpoint at step {step} does not fit the state this config "
                f"builds (another model, optimizer or class count?). Orbax says: {str(e)[:2000]}"
            ) from e
        return restored["state"]

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.close()
