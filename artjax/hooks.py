"""Periodic work of the training loop, as small hooks with one job each (in the manner of
clu.periodic_actions). The loop calls, in list order:

  before_step(step)                      before each train step
  after_step(step, metrics)              after it, with the step's on-device metrics (no host sync)
  end_epoch(epoch, step, state, summary) after an epoch's last step; hooks read and add to
  `summary`,
                                         the epoch's metrics, so order matters (train metrics, then
                                         validation, then the writers and the checkpoint)
  close()                                once, when the loop ends for any reason
"""

from __future__ import annotations

import json
import pathlib
import shutil
import time

import jax
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from artjax import checkpointing, evaluation, steps


class NonFiniteLossError(FloatingPointError):
    pass


class StopTraining(Exception):
    """Raised by a hook to end the loop after the current epoch, as an interruption would."""


def report(line: str) -> None:
    """User-facing progress (process 0), printed through tqdm so progress bars stay intact."""
    if jax.process_index() == 0:
        tqdm.write(line)


class Hook:
    def before_step(self, step: int) -> None:
        pass

    def after_step(self, step: int, metrics) -> None:
        pass

    def end_epoch(self, epoch: int, step: int, state, summary: dict) -> None:
        pass

    def close(self) -> None:
        pass


class TrainMetrics(Hook):
    """Train loss and accuracy: fetched from the devices every `log_every` steps and at each epoch's
    end (the loop's only host syncs), checked for a non-finite loss or gradient there, and averaged
    over the epoch into the summary with its time and images/s."""

    def __init__(self, steps_per_epoch: int, log_every: int, batch_size: int, workdir):
        self.steps_per_epoch, self.log_every, self.batch_size = (
            steps_per_epoch,
            log_every,
            batch_size,
        )
        self.workdir = workdir
        self._reset()

    def _reset(self):
        self.pending, self.sums, self.seen, self.epoch_start = (
            [],
            {"loss": 0.0, "accuracy": 0.0},
            0,
            None,
        )

    def before_step(self, step):
        if self.epoch_start is None:
            self.epoch_start = time.perf_counter()

    def after_step(self, step, metrics):
        self.pending.append((step, metrics))
        i = step % self.steps_per_epoch
        if (i + 1) % self.log_every == 0 or i + 1 == self.steps_per_epoch:
            self.flush()

    def flush(self):
        for s, m in jax.device_get(self.pending):
            if m["nonfinite"][0]:
                raise NonFiniteLossError(
                    f"non-finite loss or gradient at step {s} "
                    f"(epoch {s // self.steps_per_epoch + 1}); the state was not updated and "
                    f"the last checkpoint in {self.workdir} is intact"
                )
            self.sums = {k: self.sums[k] + float(m[k][0]) for k in self.sums}
        self.seen += len(self.pending)
        self.pending = []

    @property
    def mean_loss(self) -> float:
        return self.sums["loss"] / max(self.seen, 1)

    @property
    def images_per_second(self) -> float:
        return self.seen * self.batch_size / (time.perf_counter() - self.epoch_start)

    def end_epoch(self, epoch, step, state, summary):
        seconds = time.perf_counter() - self.epoch_start
        summary.update(
            train_loss=self.mean_loss,
            train_accuracy=self.sums["accuracy"] / self.seen,
            epoch_seconds=seconds,
            train_images_per_second=self.seen * self.batch_size / seconds,
        )
        self._reset()


class ProgressBar(Hook):
    """A tqdm bar per epoch with the running loss and images/s (process 0)."""

    def __init__(self, train_metrics: TrainMetrics, num_epochs: int):
        self.metrics, self.num_epochs, self.bar, self.shown = train_metrics, num_epochs, None, 0

    def before_step(self, step):
        if self.bar is None:
            epoch = step // self.metrics.steps_per_epoch
            self.bar = tqdm(
                total=self.metrics.steps_per_epoch,
                desc=f"epoch {epoch + 1}/{self.num_epochs}",
                unit="step",
                disable=jax.process_index() != 0,
            )

    def after_step(self, step, metrics):
        if self.metrics.seen > self.shown:  # TrainMetrics has just fetched new values
            self.bar.update(self.metrics.seen - self.shown)
            self.shown = self.metrics.seen
            self.bar.set_postfix(
                loss=f"{self.metrics.mean_loss:.4f}", img_s=f"{self.metrics.images_per_second:.1f}"
            )

    def end_epoch(self, epoch, step, state, summary):
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        self.bar, self.shown = None, 0


class CompileTimer(Hook):
    """Reports the time of the first two steps: the first includes compilation, and the second
    shows that the stepped state did not compile the step again (steps.replicate)."""

    def __init__(self, start_step: int):
        self.last, self.start = start_step + 1, None

    def before_step(self, step):
        if step <= self.last:
            self.start = time.perf_counter()

    def after_step(self, step, metrics):
        if step <= self.last:
            jax.block_until_ready(metrics)
            report(
                f"step {step + 1} (compilation included): {time.perf_counter() - self.start:.1f}s"
            )


class Profiler(Hook):
    """A jax.profiler trace of `num_steps` steps from `start_step` into `logdir`."""

    def __init__(self, start_step: int, num_steps: int, logdir):
        self.first, self.last, self.logdir = start_step, start_step + num_steps - 1, str(logdir)

    def before_step(self, step):
        if step == self.first:
            jax.profiler.start_trace(self.logdir)

    def after_step(self, step, metrics):
        if step == self.last:
            jax.block_until_ready(metrics)
            jax.profiler.stop_trace()


class Validation(Hook):
    """The validation split's loss and accuracy at each epoch's end."""

    def __init__(self, p_eval_step, val_batches):
        self.p_eval_step, self.val_batches = p_eval_step, val_batches

    def end_epoch(self, epoch, step, state, summary):
        metrics, _ = evaluation.evaluate_split(self.p_eval_step, state, self.val_batches(), "val")
        summary.update(metrics)


def _scalars(writer, step: int, summary: dict) -> None:
    with writer.as_default(step=step):
        for k, v in summary.items():
            if isinstance(v, (int, float, np.floating)):
                tf.summary.scalar(k, v)


def rewrite_tensorboard(workdir: pathlib.Path) -> None:
    """Rewrites tensorboard/ from metrics.jsonl, so a resumed run's curves hold each epoch once
    (event files cannot drop the points of epochs whose checkpoint a crash lost)."""
    logdir = pathlib.Path(workdir) / "tensorboard"
    rows = checkpointing.read_metrics(workdir)
    if logdir.exists():
        shutil.rmtree(logdir)
    if not rows:
        return
    writer = tf.summary.create_file_writer(str(logdir))
    for row in rows:
        _scalars(writer, row["step"], {k: v for k, v in row.items() if k != "step"})
    writer.close()


class MetricWriter(Hook):
    """The epoch's summary as a line of metrics.jsonl, TensorBoard scalars and a printed line
    (process 0 writes)."""

    def __init__(self, workdir: pathlib.Path):
        self.enabled = jax.process_index() == 0
        if self.enabled:
            self.jsonl = workdir / checkpointing.METRICS_FILE
            self.tb = tf.summary.create_file_writer(str(workdir / "tensorboard"))

    def end_epoch(self, epoch, step, state, summary):
        report(
            f"epoch {epoch}: "
            + ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if k != "epoch")
        )
        if not self.enabled:
            return
        with self.jsonl.open("a") as f:
            f.write(json.dumps({"step": step, **summary}) + "\n")
        _scalars(self.tb, step, summary)
        self.tb.flush()


class Checkpointer(Hook):
    """Saves the state every `every_epochs` and after the last epoch, with the validation metrics
    that pick the best checkpoint; waits for the last save on close."""

    def __init__(
        self, ckpt: checkpointing.Checkpoints, run: dict, every_epochs: int, num_epochs: int
    ):
        self.ckpt, self.run, self.every, self.num_epochs = ckpt, run, every_epochs, num_epochs

    def end_epoch(self, epoch, step, state, summary):
        if epoch % self.every == 0 or epoch == self.num_epochs:
            scores = {k: v for k, v in summary.items() if k.startswith("val_")}
            self.ckpt.save(step, steps.unreplicate(state), self.run, scores)

    def close(self):
        self.ckpt.wait()
        self.ckpt.close()


class StopAfterEpoch(Hook):
    """Ends the run after `epoch` epochs (counted from the start of training), as an interruption
    would: for tests of resuming, and for jobs with a time limit."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def end_epoch(self, epoch, step, state, summary):
        if epoch >= self.epoch:
            raise StopTraining
