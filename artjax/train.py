"""Training: `python -m artjax.train --config experiments/<exp>.py[:variant] --workdir checkpoints/<run>`.

`main` parses flags and calls `train_and_evaluate(config, workdir)`, which trains with a pmap'd step
over all local devices, evaluates on the validation split every epoch, checkpoints with Orbax and
resumes from the latest checkpoint of `workdir` automatically.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX start threads (see artjax.host_memory)
    from artjax import host_memory

    host_memory.keep_freed_memory()

import functools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from absl import app, flags, logging
from flax import jax_utils
from ml_collections import config_flags
from tqdm import tqdm

from artjax import checkpointing, configs, models, steps, transfer
from artjax import input_pipeline as ip

class NonFiniteLossError(FloatingPointError):
    pass


def report(line: str) -> None:
    """User-facing progress (process 0), printed through tqdm so progress bars stay intact."""
    if jax.process_index() == 0:
        tqdm.write(line)


def run_record(config, data: ip.PreparedData) -> dict:
    """What evaluation and prediction need besides the checkpoint (written as workdir/run.json).
    Paths are made absolute so the workdir can be evaluated from anywhere."""
    config = config.copy_and_resolve_references()
    config.data.root = str(data.root.absolute())
    config.data.prepared_dir = str(pathlib.Path(config.data.prepared_dir).absolute())
    return dict(
        model=config.model.to_dict(),
        classes=list(data.classes),
        image_size=config.data.image_size,
        normalization=config.data.normalization,
        synthetic=data.synthetic,
        data_root=config.data.root,
        counts=data.counts,
        class_weights=data.class_weights.tolist(),
        config=json.loads(config.to_json_best_effort()),
    )


def model_plan(config, model) -> transfer.Plan:
    """Which layers of `model` train and which BatchNorm layers stay in inference mode (config.freeze)."""
    return transfer.plan(config.freeze, *transfer.layer_paths(model, config.data.image_size))


def build_model(config, num_classes: int, axis_name: str | None = steps.AXIS):
    """(model, plan): the configured module with its frozen BatchNorm layers, and the freeze plan."""
    the_plan = model_plan(config, models.create_model(config.model, num_classes, axis_name))
    return models.create_model(config.model, num_classes, axis_name, the_plan.frozen_norms), the_plan


def create_train_state(config, model, steps_per_epoch: int, *, classes=None,
                       plan: transfer.Plan | None = None) -> steps.TrainState:
    """A fresh state; with `classes` given, `config.init.checkpoint`'s weights are loaded into it.
    `plan` (from build_model) is derived from the config when not given."""
    init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
    shape = (1, config.data.image_size, config.data.image_size, 3)
    variables = jax.jit(functools.partial(model.init, train=False))(init_key, jnp.zeros(shape, jnp.float32))
    if classes is not None and config.init.checkpoint:
        variables = transfer.load_initial_variables(config.init, variables, config.model, config.data, classes)
    tx = transfer.create_optimizer(config, plan or model_plan(config, model), variables["params"], steps_per_epoch)
    return steps.TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                                   batch_stats=variables.get("batch_stats", {}), rng=train_key)


def parameter_overview(params) -> str:
    rows = [(name, sum(x.size for x in jax.tree.leaves(sub))) for name, sub in params.items()]
    width = max(len(n) for n, _ in rows)
    lines = [f"{n:<{width}} {c:>12,}" for n, c in rows]
    return "\n".join(lines + [f"{'total':<{width}} {sum(c for _, c in rows):>12,}"])


def evaluate_split(p_eval_step, state, batches, split: str) -> tuple[dict, dict]:
    """Metrics of one pass over a split's padded batches (from the step's on-device sums), and the
    labels, logits and filenames of its real (unpadded) images."""
    sums, found = {"loss": 0.0, "correct": 0.0, "count": 0.0}, {"labels": [], "logits": [], "filenames": []}
    for batch in batches:
        filenames = batch.pop("filename").reshape(-1)
        batch_logits, batch_sums = p_eval_step(state, batch)
        sums = {k: sums[k] + float(batch_sums[k][0]) for k in sums}
        mask = batch["mask"].reshape(-1) == 1
        found["labels"].append(batch["label"].reshape(-1)[mask])
        found["logits"].append(np.asarray(batch_logits, np.float32).reshape(mask.size, -1)[mask])
        found["filenames"].append(filenames[mask])
    count = max(sums["count"], 1.0)
    metrics = {f"{split}_loss": sums["loss"] / count, f"{split}_accuracy": sums["correct"] / count}
    return metrics, {k: np.concatenate(v) for k, v in found.items()}


class MetricWriter:
    """metrics.jsonl plus TensorBoard events, written by process 0 only."""

    def __init__(self, workdir: pathlib.Path):
        self.enabled = jax.process_index() == 0
        if self.enabled:
            self.jsonl = workdir / checkpointing.METRICS_FILE
            self.tb = tf.summary.create_file_writer(str(workdir / "tensorboard"))

    def write(self, step: int, metrics: dict):
        if not self.enabled:
            return
        with self.jsonl.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        with self.tb.as_default(step=step):
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    tf.summary.scalar(k, v)
        self.tb.flush()


def train_and_evaluate(config, workdir, *, stop_after_epoch: int | None = None) -> dict:
    """Trains `config` in `workdir` (resuming from its latest checkpoint); returns the last epoch's
    metrics. `stop_after_epoch` ends the run early, as an interruption would (for tests)."""
    workdir = pathlib.Path(workdir)
    num_devices = jax.local_device_count()
    data = ip.prepare_data(config.data, config.seed)
    run = run_record(config, data)
    if jax.process_index() == 0:
        checkpointing.write_run(workdir, run)  # raises on a mismatching workdir before anything else
    if data.synthetic:
        logging.warning("training on the embedded SYNTHETIC set: results say nothing about paintings")

    model, the_plan = build_model(config, len(data.classes))
    steps_per_epoch = data.num_examples("train") // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {data.num_examples('train')} training images")
    ckpt = checkpointing.Checkpoints(workdir, config.keep_checkpoints, config.best_metric)
    resuming = ckpt.latest_step() is not None
    # A resumed run restores everything from its own checkpoint: init.checkpoint is not read again.
    state = create_train_state(config, model, steps_per_epoch, classes=None if resuming else data.classes,
                               plan=the_plan)
    report(f"parameters:\n{parameter_overview(state.params)}")
    if config.freeze.trainable != "all":
        report(f"trainable layers ({config.freeze.trainable}): {len(the_plan.trainable)}, from "
               f"{the_plan.trainable[0]!r}; BatchNorm in inference mode: {len(the_plan.frozen_norms)} layers")
    if resuming:
        state = ckpt.restore(ckpt.latest_step(), state)
        report(f"resumed from step {int(state.step)} in {workdir}")
    start_step = int(state.step)

    class_weights = jnp.asarray(data.class_weights if config.class_weighted else np.ones(len(data.classes)),
                                jnp.float32)
    trainable = transfer.trainable_keys(state.params, the_plan)
    p_train_step = jax.pmap(
        functools.partial(steps.train_step, class_weights=class_weights, label_smoothing=config.label_smoothing,
                          normalize_weights=config.normalize_class_weights,
                          trainable=None if len(trainable) == len(jax.tree.leaves(state.params)) else trainable),
        axis_name=steps.AXIS, donate_argnums=(0,))
    p_eval_step = jax.pmap(steps.eval_step, axis_name=steps.AXIS)
    if transfer.uses_cached_features(config, the_plan):
        # Frozen backbone, no augmentation: each image's features once, then the head trains on them.
        features_start = time.perf_counter()
        p_features = jax.pmap(functools.partial(model.apply, train=False, return_features=True))
        variables = jax_utils.replicate({"params": state.params, "batch_stats": state.batch_stats})
        features = {split: transfer.compute_features(
            p_features, variables, ip.eval_dataset(data, split, config, num_devices).as_numpy_iterator())
            for split in ("train", "val")}
        report(f"backbone features of {sum(len(f['label']) for f in features.values())} images: "
               f"{time.perf_counter() - features_start:.1f}s")
        state = state.replace(apply_fn=transfer.features_apply(model))
        batches = transfer.feature_train_batches(features["train"], config, num_devices, start_step,
                                                 data.counts["train"])
        val_batches = lambda: transfer.feature_eval_batches(features["val"], config, num_devices,
                                                            data.num_examples("val"))
    else:
        batches = ip.train_dataset(data, config, num_devices, start_step=start_step).as_numpy_iterator()
        val_batches = lambda: ip.eval_dataset(data, "val", config, num_devices).as_numpy_iterator()
    state = jax_utils.replicate(state)
    if config.prefetch_to_device:
        batches = jax_utils.prefetch_to_device(batches, config.prefetch_to_device)

    writer = MetricWriter(workdir)
    metrics = {}
    for epoch in range(start_step // steps_per_epoch, config.num_epochs):
        pending, train_sums, seen = [], {"loss": 0.0, "accuracy": 0.0}, 0
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.num_epochs}", unit="step",
                   disable=jax.process_index() != 0)
        epoch_start = time.perf_counter()
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            if step == config.profile_start_step:
                jax.profiler.start_trace(str(workdir / "profile"))
            if step < start_step + 2:  # pmap compiles twice: the replicated and the stepped state differ in sharding
                compile_start = time.perf_counter()
                state, step_metrics = p_train_step(state, next(batches))
                jax.block_until_ready(step_metrics)
                report(f"step {step + 1} (compilation included): {time.perf_counter() - compile_start:.1f}s")
            else:
                state, step_metrics = p_train_step(state, next(batches))
            pending.append((step, step_metrics))
            if config.profile_start_step >= 0 and step == config.profile_start_step + config.profile_steps - 1:
                jax.block_until_ready(step_metrics)
                jax.profiler.stop_trace()
            if (i + 1) % config.log_every_steps == 0 or i + 1 == steps_per_epoch:
                for s, m in jax.device_get(pending):  # the only host sync of the hot loop
                    if m["nonfinite"][0]:
                        raise NonFiniteLossError(
                            f"non-finite loss or gradient at step {s} (epoch {epoch + 1}); the state "
                            f"was not updated and the last checkpoint in {workdir} is intact")
                    train_sums = {k: train_sums[k] + float(m[k][0]) for k in train_sums}
                seen += len(pending)
                bar.update(len(pending))
                elapsed = time.perf_counter() - epoch_start
                bar.set_postfix(loss=f"{train_sums['loss'] / seen:.4f}",
                                img_s=f"{seen * config.batch_size / elapsed:.1f}")
                pending = []
        bar.close()
        epoch_time = time.perf_counter() - epoch_start
        val_metrics, _ = evaluate_split(p_eval_step, state, val_batches(), "val")
        metrics = {"epoch": epoch + 1, "train_loss": train_sums["loss"] / seen,
                   "train_accuracy": train_sums["accuracy"] / seen, **val_metrics,
                   "epoch_seconds": epoch_time, "train_images_per_second": seen * config.batch_size / epoch_time}
        end_step = (epoch + 1) * steps_per_epoch
        writer.write(end_step, metrics)
        report(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch"))
        last = epoch + 1 == config.num_epochs
        if (epoch + 1) % config.checkpoint_every_epochs == 0 or last or epoch + 1 == stop_after_epoch:
            ckpt.save(end_step, jax.device_get(steps.unreplicate(state)), run,
                      {k: v for k, v in metrics.items() if k.startswith("val_")})
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    ckpt.wait()
    ckpt.close()
    return metrics


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    tf.config.set_visible_devices([], "GPU")
    if flags.FLAGS.distributed:  # several processes (SLURM, TPU pods, JAX_COORDINATOR_ADDRESS, ...)
        jax.distributed.initialize()
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax and TFDS are chatty at INFO; --verbosity=0 shows it
    train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
    # Flags are defined here, not at import, so other modules can import this library.
    config_flags.DEFINE_config_file("config", None, "Experiment config (experiments/*.py).")
    flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, reports.")
    flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-process launch).")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=configs.parse_flags)
