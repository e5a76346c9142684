"""The training loop: `train_and_evaluate(config, workdir)` trains with a pmap'd step over all local
devices, validates and checkpoints every epoch (Orbax), and resumes from the latest checkpoint of
`workdir`. Periodic work is done by hooks (`artjax.hooks`); the batches come from a `BatchSource`
chosen at set-up: images through tf.data, or a frozen backbone's cached features with the head's
apply function.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import time
from typing import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import jax_utils

from artjax import (
    calibration,
    checkpointing,
    era,
    evaluation,
    hooks,
    models,
    steps,
    train_state,
    transfer,
)
from artjax.data import catalog, exploration, feature_batches
from artjax.data import input_pipeline as ip


@dataclasses.dataclass(frozen=True)
class BatchSource:
    train: Iterator[dict]  # endless training batches, from the step the run resumes at
    val: Callable[[], Iterable[dict]]  # one padded, masked pass over the validation split
    # what the steps apply to batch["image"]; None: the model on images
    apply_fn: Callable | None = None
    # what the train step applies, where it differs (an era head's (logits, era)); None: apply_fn
    train_apply_fn: Callable | None = None


@dataclasses.dataclass(frozen=True)
class Setup:
    """Everything the loop needs, built once by `set_up`."""

    config: object
    workdir: pathlib.Path
    run: dict  # the run record (workdir/run.json)
    ckpt: checkpointing.Checkpoints
    state: steps.TrainState  # replicated over the local devices
    start_step: int
    steps_per_epoch: int
    batches: BatchSource
    p_train_step: Callable
    p_eval_step: Callable


def run_record(config, data: ip.PreparedData) -> dict:
    """What evaluation and prediction need besides the checkpoint (written as workdir/run.json).
    Paths are made absolute so the workdir can be evaluated from anywhere."""
    config = config.copy_and_resolve_references()
    config.data.root = str(data.root.absolute())
    config.data.prepared_dir = str(pathlib.Path(config.data.prepared_dir).absolute())
    return dict(
        model=config.model.to_dict(),
        classes=list(data.classes),
        multi_label=data.multi_label,
        image_size=config.data.image_size,
        normalization=config.data.normalization,
        synthetic=data.synthetic,
        data_root=config.data.root,
        counts=data.counts,
        class_weights=data.class_weights.tolist(),
        config=json.loads(config.to_json_best_effort()),
    )


def image_heads(module, images, train: bool = False):
    """(style logits, the era head's outputs) of images: the backbone once, both heads."""
    return module.heads(module.features(images, train), train)


def image_batches(data, config, num_devices: int, start_step: int, model=None) -> BatchSource:
    """Training images through tf.data. With an era head (`model` given), the train step sees
    both heads' outputs of the images, so the era loss reaches the trainable backbone layers."""
    with_era = model is not None and config.model.era_head
    # built once: each epoch's validation iterates the same (unshuffled) dataset again instead of
    # tracing its maps anew
    val = ip.eval_dataset(data, "val", config, num_devices)
    return BatchSource(
        train=ip.train_dataset(
            data, config, num_devices, start_step=start_step
        ).as_numpy_iterator(),
        val=val.as_numpy_iterator,
        train_apply_fn=functools.partial(model.apply, method=image_heads) if with_era else None,
    )


def feature_pass(config, model, state, num_devices: int, photo=None) -> Callable:
    """compute(data, split) -> the frozen backbone's pooled features of every image of the split
    (`feature_batches.compute_features`): what a feature cache holds, and what `artjax.bench
    backbone` times. `photo`: (photos config, seed) for photo views (input_pipeline.eval_ops)."""
    p_features = jax.pmap(functools.partial(models.features_fn(model), train=False))
    variables = steps.replicate({"params": state.params, "batch_stats": state.batch_stats})

    def compute(split_data, split):
        batches = ip.eval_dataset(
            split_data, split, config, num_devices, photo=photo
        ).as_numpy_iterator()
        return feature_batches.compute_features(p_features, variables, batches)

    return compute


def backbone_features(data, config, model, state, num_devices: int) -> dict:
    """split -> the frozen backbone's features of the train and val images, computed now or read
    from the shared cache (`freeze.feature_cache`), which holds every image of the class set."""
    compute = feature_pass(config, model, state, num_devices)
    periods = ip.artist_periods(data) if config.model.era_head else None
    if not config.freeze.feature_cache:
        if config.data.photo_views:
            raise ValueError("data.photo_views are cached: set freeze.feature_cache")
        found = {split: compute(data, split) for split in ("train", "val")}
        if periods is not None:
            for features in found.values():
                features["era"] = ip.era_targets(data, features["filename"], periods)
        return found
    if jax.process_count() > 1:
        raise ValueError("freeze.feature_cache holds every image: it is for single-process runs")
    identity = feature_batches.cache_identity(config)
    cache_dir = config.freeze.feature_cache
    found = feature_batches.read_cache(cache_dir, identity)
    # only the images the cache lacks (another class set's, or new ones) go through the backbone
    missing = sorted({r.filename for r in data.rows} - set(found))
    if missing:
        computed = compute(ip.with_images(data, "missing", missing), "missing")
        found.update(zip((f.decode() for f in computed["filename"]), computed["features"]))
        feature_batches.save_cache(cache_dir, identity, found)
        hooks.report(f"backbone features of {len(missing)} images computed into {cache_dir}")
    else:
        hooks.report(f"backbone features read from {cache_dir}")
    # robust heads: each training painting's photo views (data.photo_views), cached beside them
    for view in range(config.data.photo_views):
        keys = {f: feature_batches.photo_key(config, f, view) for f in data.members["train"]}
        lacking = sorted(f for f, key in keys.items() if key not in found)
        if not lacking:
            continue
        started = time.perf_counter()
        photographed = feature_pass(
            config, model, state, num_devices, photo=(config.photos, 1000 * config.seed + view)
        )
        computed = photographed(ip.with_images(data, "photo", lacking), "photo")
        found.update(
            (keys[f.decode()], v) for f, v in zip(computed["filename"], computed["features"])
        )
        feature_batches.save_cache(cache_dir, identity, found)
        hooks.report(
            f"photo view {view} of {len(lacking)} training paintings computed into {cache_dir} "
            f"in {time.perf_counter() - started:.1f}s"
        )
    split = {s: feature_batches.split_features(data, s, found, periods) for s in ("train", "val")}
    split["train"] = feature_batches.with_photo_views(split["train"], config, found)
    return split


def cached_feature_batches(
    data, config, model, state, num_devices: int, start_step: int
) -> BatchSource:
    """The frozen backbone runs once per train and val image (or once per image for all runs
    that share a cache); the head then trains on its features."""
    start = time.perf_counter()
    features = backbone_features(data, config, model, state, num_devices)
    if config.coral_weight:
        artists = artist_ids(data)
        names = [f.decode() for f in features["train"]["filename"]]
        features["train"]["artist"] = np.array(
            [artists[a] for a in ip.artists_of(data, names)], np.int32
        )
    count = sum(len(f["label"]) for f in features.values())
    elapsed = time.perf_counter() - start
    hooks.report(f"backbone features of the {count} training and validation images: {elapsed:.1f}s")
    return BatchSource(
        train=feature_batches.train_batches(
            features["train"],
            config,
            num_devices,
            start_step,
            ip.training_draw(data, config, features["train"]["filename"]),
        ),
        val=lambda: feature_batches.eval_batches(
            features["val"], config, num_devices, data.num_examples("val")
        ),
        apply_fn=models.head_apply(model),
        train_apply_fn=models.head_apply(model, with_era=config.model.era_head),
    )


def initial_state(config, model, plan, classes, steps_per_epoch, ckpt) -> steps.TrainState:
    """The workdir's newest readable checkpoint (unreadable newer ones are moved aside), or a fresh
    state with `config.init.checkpoint`'s weights. A resumed run restores everything from its own
    checkpoint: init.checkpoint is not read again. Then metrics.jsonl and TensorBoard are cut back
    to the restored step, and checkpoints beyond the retention policy (left by killed runs) go."""
    step = None
    if ckpt.latest_step() is not None:
        like = train_state.abstract_train_state(config, model, steps_per_epoch, plan=plan)
        step, state = ckpt.restore_newest_readable(like)
    if step is None:
        state = train_state.create_train_state(
            config, model, steps_per_epoch, classes=classes, plan=plan
        )
    hooks.report(f"parameters:\n{train_state.parameter_overview(state.params)}")
    if config.freeze.trainable != "all":
        hooks.report(
            f"trainable layers ({config.freeze.trainable}): {len(plan.trainable)}, from "
            f"{plan.trainable[0]!r}; BatchNorm in inference mode: {len(plan.frozen_norms)} layers"
        )
    if step is not None:
        hooks.report(f"resumed from step {int(state.step)} in {ckpt.workdir}")
    if jax.process_index() == 0:
        dropped = checkpointing.truncate_metrics(ckpt.workdir, int(state.step))
        if dropped:
            logging.warning(
                "metrics.jsonl: dropped the lines of steps %s, logged after the restored step %d",
                [d["step"] for d in dropped],
                int(state.step),
            )
        hooks.rewrite_tensorboard(ckpt.workdir)
        ckpt.apply_retention()
    return state


def era_bin_edges(config) -> np.ndarray | None:
    """The era head's bin edges in `artjax.era` units (model.era_bins), checked against
    era.loss: the "bins" loss is for bins, the others for a regression."""
    m = config.model
    if not m.era_head:
        return None
    if (config.era.loss == "bins") != bool(m.era_bins):
        raise ValueError(
            f"era.loss={config.era.loss!r} with model.era_bins={m.era_bins}: the 'bins' loss "
            "takes model.era_bins > 0, the regression losses model.era_bins=0"
        )
    if not m.era_bins:
        return None
    return era.from_years(m.era_bin_start + m.era_bin_years * np.arange(m.era_bins + 1))


def artist_ids(data) -> dict[str, int]:
    """Each artist of the class set's id (sorted by name), for CORAL across artists."""
    return {a: i for i, a in enumerate(sorted({r.artist for r in data.rows}))}


def time_targets(config, data) -> np.ndarray | None:
    """`steps.time_soft_targets` of `config.time_smoothing`, the styles ordered in time by the
    active periods of the download's artists.csv; None when it is 0."""
    if not config.time_smoothing:
        return None
    if data.multi_label or data.partial_labels:
        raise ValueError(
            "time_smoothing softens single-label targets: not with a multi-label class set or "
            "data.partial_labels"
        )
    periods = ip.artist_periods(data)
    neighbours = catalog.time_neighbours(data.classes, data.artist_genres, periods)
    return steps.time_soft_targets(data.classes, neighbours, config.time_smoothing)


def pmapped_steps(config, data, state, plan, batches: BatchSource) -> tuple[Callable, Callable]:
    """The train and eval steps mapped over the local devices (named axis steps.AXIS)."""
    weights = data.class_weights if config.class_weighted else np.ones(len(data.classes))
    trainable = transfer.trainable_keys(state.params, plan)
    train_step = functools.partial(
        steps.train_step,
        class_weights=jnp.asarray(weights, jnp.float32),
        label_smoothing=config.label_smoothing,
        normalize_weights=config.normalize_class_weights,
        trainable=None if len(trainable) == len(jax.tree.leaves(state.params)) else trainable,
        apply_fn=batches.train_apply_fn or batches.apply_fn,
        # rows with partial labels train on the total probability of their listed classes
        multi_label_loss="partial" if data.partial_labels else config.multi_label_loss,
        mixup_alpha=config.mixup_alpha,
        era_weight=config.era.loss_weight if config.model.era_head else 0.0,
        era_loss=config.era.loss,
        target_matrix=time_targets(config, data),
        coral_weight=config.coral_weight,
        num_artists=len(artist_ids(data)),
        era_edges=era_bin_edges(config),
    )
    eval_step = functools.partial(
        steps.eval_step, apply_fn=batches.apply_fn, multi_label_loss=config.multi_label_loss
    )
    return (
        jax.pmap(train_step, axis_name=steps.AXIS, donate_argnums=(0,)),
        jax.pmap(eval_step, axis_name=steps.AXIS),
    )


def set_up(config, workdir) -> Setup:
    """Data, model, state (fresh or resumed from the workdir's latest checkpoint), batches and the
    pmap'd steps of a run."""
    workdir = pathlib.Path(workdir)
    num_devices = jax.local_device_count()
    data = ip.prepare_data(config.data, config.seed)
    if config.model.era_style_weight:  # the styles' places in time, from this run's own artists
        config = config.copy_and_resolve_references()
        config.model.style_years = ip.training_style_years(data)
    if config.calibration.enabled and config.calibration.from_cv:
        calibration.load_unseen_artists(config.calibration.from_cv, data.classes)  # fail early
    run = run_record(config, data)
    if jax.process_index() == 0:
        # Refuses a workdir that holds another run before anything is written.
        checkpointing.write_run(workdir, run)
    if data.synthetic:
        logging.warning(
            "training on the embedded SYNTHETIC set: results say nothing about paintings"
        )
    hooks.report(f"classes ({config.data.classes}):\n{exploration.class_table(data)}")
    if data.heldout_artists:
        hooks.report(f"held-out artists (the test split): {', '.join(data.heldout_artists)}")
    if config.data.split_by == "artist" or data.heldout_artists:
        lone = ", ".join(data.single_artist_classes) or "none"
        hooks.report(f"classes with a single artist, excluded from held-out scoring: {lone}")

    model, plan = train_state.build_model(config, len(data.classes))
    steps_per_epoch = data.num_examples("train") // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the {data.num_examples('train')} "
            "training images"
        )
    ckpt = checkpointing.Checkpoints(workdir, config.keep_checkpoints, config.best_metric)
    state = initial_state(config, model, plan, data.classes, steps_per_epoch, ckpt)
    start_step = int(state.step)
    if transfer.uses_cached_features(config, plan):
        batches = cached_feature_batches(data, config, model, state, num_devices, start_step)
    elif config.coral_weight:
        raise ValueError(
            "coral_weight trains on a frozen backbone's cached features "
            "(freeze.trainable=head, freeze.cache_features=True, data.augment_enabled=False)"
        )
    else:
        batches = image_batches(data, config, num_devices, start_step, model)
    if config.prefetch_to_device:
        prefetched = jax_utils.prefetch_to_device(batches.train, config.prefetch_to_device)
        batches = dataclasses.replace(batches, train=prefetched)
    p_train_step, p_eval_step = pmapped_steps(config, data, state, plan, batches)
    return Setup(
        config=config,
        workdir=workdir,
        run=run,
        ckpt=ckpt,
        state=steps.replicate(state),
        start_step=start_step,
        steps_per_epoch=steps_per_epoch,
        batches=batches,
        p_train_step=p_train_step,
        p_eval_step=p_eval_step,
    )


def default_hooks(setup: Setup) -> list[hooks.Hook]:
    c = setup.config
    metrics = hooks.TrainMetrics(
        setup.steps_per_epoch, c.log_every_steps, c.batch_size, setup.workdir
    )
    found = [
        metrics,
        hooks.ProgressBar(metrics, c.num_epochs),
        hooks.CompileTimer(setup.start_step),
        hooks.Validation(setup.p_eval_step, setup.batches.val),
        hooks.MetricWriter(setup.workdir),
        hooks.Checkpointer(setup.ckpt, setup.run, c.checkpoint_every_epochs, c.num_epochs),
    ]
    if c.profile_start_step >= 0:
        found.append(
            hooks.Profiler(c.profile_start_step, c.profile_steps, setup.workdir / "profile")
        )
    return found


def train_loop(setup: Setup, loop_hooks: list[hooks.Hook]) -> dict:
    """Runs the epochs left; returns the last epoch's summary (train and validation metrics)."""
    state, summary = setup.state, {}
    first_epoch = setup.start_step // setup.steps_per_epoch
    try:
        for epoch in range(first_epoch, setup.config.num_epochs):
            for step in range(epoch * setup.steps_per_epoch, (epoch + 1) * setup.steps_per_epoch):
                for hook in loop_hooks:
                    hook.before_step(step)
                state, metrics = setup.p_train_step(state, next(setup.batches.train))
                for hook in loop_hooks:
                    hook.after_step(step, metrics)
            summary = {"epoch": epoch + 1}
            for hook in loop_hooks:
                hook.end_epoch(epoch + 1, step + 1, state, summary)
    except hooks.StopTraining:
        pass
    finally:
        for hook in loop_hooks:
            hook.close()
    return summary


def train_and_evaluate(config, workdir, *, extra_hooks: Iterable[hooks.Hook] = ()) -> dict:
    """Trains `config` in `workdir` (resuming from its latest checkpoint); returns the last epoch's
    metrics, validation included. `extra_hooks` run after the default ones."""
    setup = set_up(config, workdir)
    summary = train_loop(setup, default_hooks(setup) + list(extra_hooks))
    calibrate_finished_run(config, setup.workdir)
    return summary


def calibrate_finished_run(config, workdir) -> None:
    """Temperature and "uncertain" threshold for the best checkpoint of a run that reached its
    last epoch (`evaluation.calibrate`). Multi-process runs calibrate afterwards, in one process:
    `artjax.evaluate --calibrate`."""
    history = checkpointing.read_metrics(workdir)
    if not config.calibration.enabled or not history or history[-1]["epoch"] < config.num_epochs:
        return
    if jax.process_count() > 1:
        hooks.report("calibration: run `python -m artjax.evaluate --calibrate` in one process")
        return
    found = evaluation.calibrate(workdir)
    source = f"the held-out artists of {found['from_cv']}" if "from_cv" in found else "validation"
    hooks.report(
        f"calibration from {source}: temperature {found['temperature']:.3g}; on validation NLL "
        f"{found['nll_before']:.4g} -> {found['nll_after']:.4g}, ECE {found['ece_before']:.3g} -> "
        f"{found['ece_after']:.3g}; uncertain below a top probability of "
        f"{found['uncertain_below']:.3g}"
    )
