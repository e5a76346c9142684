"""A run's model and TrainState: built from a config for training, or restored from a workdir for
evaluation and prediction."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from artjax import checkpointing, configs, models, steps, transfer


def build_model(config, num_classes: int, axis_name: str | None = steps.AXIS):
    """(model, plan): the configured module with its frozen BatchNorm layers, and the freeze plan
    (which layers train, config.freeze)."""
    unfrozen = models.create_model(config.model, num_classes, axis_name)
    plan = transfer.plan(config.freeze, *transfer.layer_paths(unfrozen, config.data.image_size))
    return models.create_model(config.model, num_classes, axis_name, plan.frozen_norms), plan


def create_train_state(
    config, model, steps_per_epoch: int, *, classes=None, plan: transfer.Plan | None = None
) -> steps.TrainState:
    """A fresh state; with `classes` given, `config.init.checkpoint`'s weights are loaded into it.
    `plan` (from build_model) is derived from the config when not given."""
    init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
    shape = (1, config.data.image_size, config.data.image_size, 3)
    variables = jax.jit(functools.partial(model.init, train=False))(
        init_key, jnp.zeros(shape, jnp.float32)
    )
    if classes is not None and config.init.checkpoint:
        variables = transfer.load_initial_variables(
            config.init, variables, config.model, config.data, classes
        )
    if plan is None:
        plan = transfer.plan(config.freeze, *transfer.layer_paths(model, config.data.image_size))
    tx = transfer.create_optimizer(config, plan, variables["params"], steps_per_epoch)
    return steps.TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
        rng=train_key,
    )


def abstract_train_state(
    config, model, steps_per_epoch: int = 1, *, plan: transfer.Plan | None = None
) -> steps.TrainState:
    """The structure of `create_train_state`'s state: shapes and dtypes on the first local device,
    as a restore target. Traced, never compiled or run (initializing a model costs seconds)."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    found = jax.eval_shape(lambda: create_train_state(config, model, steps_per_epoch, plan=plan))
    found = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), found)
    return found.replace(step=0)  # a Python int, as TrainState.create makes it


def parameter_overview(params) -> str:
    rows = [(name, sum(x.size for x in jax.tree.leaves(sub))) for name, sub in params.items()]
    width = max(len(n) for n, _ in rows)
    lines = [f"{n:<{width}} {c:>12,}" for n, c in rows]
    return "\n".join(lines + [f"{'total':<{width}} {sum(c for _, c in rows):>12,}"])


def load_run(workdir, checkpoint: str = "best"):
    """(config, run record, state, step) of a workdir's checkpoint; state is unreplicated."""
    run = checkpointing.read_run(workdir)
    config = configs.from_record(run["config"])
    model = models.create_model(config.model, len(run["classes"]), axis_name=steps.AXIS)
    ckpt = checkpointing.Checkpoints(workdir, config.keep_checkpoints, config.best_metric)
    like = abstract_train_state(config, model)
    try:
        step, state = ckpt.restore_named(checkpoint, like)
    finally:
        ckpt.close()
    return config, run, state, step
