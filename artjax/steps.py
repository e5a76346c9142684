"""Train state and the per-device train/eval steps (pure functions, collectives on a named axis).

The training loop maps them with `jax.pmap(..., axis_name=AXIS)`; because every cross-device
reduction is an explicit `lax.pmean`/`psum` over AXIS, moving to `jax.shard_map` only changes that
wrapping line.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from flax.training import train_state

from artjax import models
from artjax.registry import Registry

AXIS = "batch"


class TrainState(train_state.TrainState):
    batch_stats: Any
    rng: jax.Array  # base key; each step uses fold_in(fold_in(rng, step), device index)


def replicate(tree, devices=None):
    """A copy of `tree` on each of `devices` (default: the local ones) along a new leading axis,
    laid out as a step pmap'd over AXIS lays out its outputs. (flax.jax_utils.replicate lays it
    out over another mesh axis, so the first step's outputs, fed to the second, made the train
    step compile a second time.)"""
    devices = list(devices or jax.local_devices())
    mesh = jax.sharding.Mesh(np.array(devices), (AXIS,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))
    return jax.tree.map(
        lambda x: jax.device_put(np.stack([np.asarray(x)] * len(devices)), sharding), tree
    )


def unreplicate(tree):
    """Device 0's copy of a pmap'd tree, without gathering the others. (flax.jax_utils.unreplicate
    returns the leading device axis intact when pmap ran on one of several local devices.)"""
    return jax.tree.map(lambda x: x.addressable_shards[0].data[0], tree)


def _listed_share(targets):
    """Multi-hot targets as a distribution: each listed class gets an equal share."""
    return targets / jnp.maximum(jnp.sum(targets, -1, keepdims=True), 1.0)


# multi_label_loss -> (logits, multi-hot targets [B, C], label smoothing) -> per-example loss
MULTI_LABEL_LOSSES = Registry(
    "multi_label_loss",
    {
        "sigmoid": lambda logits, targets, smoothing: jnp.sum(
            optax.sigmoid_binary_cross_entropy(logits, targets), -1
        ),
        "softmax": lambda logits, targets, smoothing: optax.softmax_cross_entropy(
            logits, optax.smooth_labels(_listed_share(targets), smoothing)
        ),
    },
)


def is_multi_label(labels) -> bool:
    """Single-label batches carry class indices [B]; multi-label ones multi-hot targets [B, C]."""
    return labels.ndim == 2


def example_losses(logits, labels, label_smoothing: float, multi_label_loss: str = "sigmoid"):
    """Per-example loss: softmax cross-entropy against the (smoothed) class, or the multi-label
    loss against the listed classes."""
    if is_multi_label(labels):
        return MULTI_LABEL_LOSSES[multi_label_loss](logits, labels, label_smoothing)
    targets = jax.nn.one_hot(labels, logits.shape[-1])
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def example_weights(class_weights, labels):
    """Each example's class weight; a multi-label example's is the mean over its listed classes."""
    if is_multi_label(labels):
        return _listed_share(labels) @ class_weights
    return class_weights[labels]


def top1_hits(logits, labels):
    """1 where the top class is the label, or one of the listed classes (multi-label)."""
    top = jnp.argmax(logits, -1)
    if is_multi_label(labels):
        return jnp.take_along_axis(labels, top[:, None], -1)[:, 0] > 0
    return top == labels


def probabilities(logits, multi_label: bool, multi_label_loss: str = "sigmoid"):
    """What the loss makes of the logits: per-class sigmoids for the multi-label "sigmoid" loss,
    else a softmax over the classes."""
    if multi_label and multi_label_loss == "sigmoid":
        return jax.nn.sigmoid(logits)
    return jax.nn.softmax(logits)


MIXUP_STREAM = 1  # fold_in tag: mixup's draws, apart from dropout's


def mixup(rng, batch_size: int, alpha: float):
    """(partner, weight): example i is mixed with example partner[i] (a random permutation of the
    batch) at weight[i] ~ Beta(alpha, alpha), its partner at 1 - weight[i]."""
    permutation_key, weight_key = jax.random.split(rng)
    partner = jax.random.permutation(permutation_key, batch_size)
    return partner, jax.random.beta(weight_key, alpha, alpha, (batch_size,))


def mix(x, partner, weight):
    """weight * x + (1 - weight) * x[partner], along the batch axis."""
    w = weight.reshape(-1, *([1] * (x.ndim - 1))).astype(x.dtype)
    return w * x + (1 - w) * x[partner]


def _variables(state, params):
    return (
        {"params": params, "batch_stats": state.batch_stats}
        if state.batch_stats
        else {"params": params}
    )


def train_step(
    state: TrainState,
    batch,
    *,
    class_weights,
    label_smoothing: float = 0.0,
    normalize_weights: bool = True,
    trainable: frozenset | None = None,
    apply_fn=None,
    multi_label_loss: str = "sigmoid",
    mixup_alpha: float = 0.0,
):
    """One optimizer step on this device's share of the global batch.

    The loss is a weighted mean over the *global* batch: sum(w * ce) / sum(w) with the sums taken
    over all devices (`normalize_weights`, as torch's weighted cross-entropy), or sum(w * ce) /
    batch size (Keras's `class_weight`; with large minority weights its scale jumps from batch to
    batch). With unit weights both are the plain mean. Each device differentiates its share of that
    global sum and the gradients are summed over AXIS, so any device count gives the same step.

    `trainable`: flattened parameter keys to differentiate (None: all). The others are constants of
    the loss, so neither their gradients nor the backward pass below the lowest trainable layer are
    computed; they get zero gradients (and, from the optimizer, no update).

    `apply_fn`: what maps `batch["image"]` to logits (None: the state's model on images; a frozen
    backbone's head on cached features passes `models.head_apply(model)`).

    Multi-label batches (multi-hot `label`) use `multi_label_loss`; accuracy is then the share whose
    top class is one of the listed ones.

    `mixup_alpha` > 0: inputs are mixed in pairs within this device's share (`mixup`); an example's
    loss and weight are its pair's, mixed at the same weight (cross-entropy is linear in the
    target, so this is the loss against the mixed targets). Accuracy counts the first label.
    """
    apply_fn = apply_fn or state.apply_fn
    rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), jax.lax.axis_index(AXIS))
    labels, inputs = batch["label"], batch["image"]
    weights = example_weights(class_weights, labels)
    if mixup_alpha:
        mixup_rng = jax.random.fold_in(rng, MIXUP_STREAM)
        partner, mixed = mixup(mixup_rng, labels.shape[0], mixup_alpha)
        inputs = mix(inputs, partner, mixed)
        pair_weights = (mixed * weights, (1 - mixed) * weights[partner])
        weights = pair_weights[0] + pair_weights[1]
    local_denominator = jnp.sum(weights) if normalize_weights else jnp.float32(labels.shape[0])
    denominator = jax.lax.psum(local_denominator, AXIS)

    flat_params = traverse_util.flatten_dict(state.params)
    differentiated = {k: v for k, v in flat_params.items() if trainable is None or k in trainable}

    def loss_fn(diff_params):
        params = traverse_util.unflatten_dict({**flat_params, **diff_params})
        logits, updates = apply_fn(
            _variables(state, params),
            inputs,
            train=True,
            rngs={"dropout": rng},
            mutable=["batch_stats"],
        )
        losses = example_losses(logits, labels, label_smoothing, multi_label_loss)
        if not mixup_alpha:
            return jnp.sum(losses * weights) / denominator, (logits, updates)
        partner_losses = example_losses(logits, labels[partner], label_smoothing, multi_label_loss)
        weighted = pair_weights[0] * losses + pair_weights[1] * partner_losses
        return jnp.sum(weighted) / denominator, (logits, updates)

    (local_loss, (logits, updates)), diff_grads = jax.value_and_grad(loss_fn, has_aux=True)(
        differentiated
    )
    diff_grads = jax.lax.psum(diff_grads, AXIS)
    grads = traverse_util.unflatten_dict(
        {k: diff_grads[k] if k in diff_grads else jnp.zeros_like(v) for k, v in flat_params.items()}
    )
    loss = jax.lax.psum(local_loss, AXIS)
    finite = jnp.isfinite(loss) & jnp.all(
        jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
    )
    new_state = state.apply_gradients(
        grads=grads, batch_stats=updates.get("batch_stats", state.batch_stats)
    )
    # A non-finite step leaves the state as it was; the loop stops at its next check.
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
    metrics = {
        "loss": loss,
        "accuracy": jax.lax.pmean(jnp.mean(top1_hits(logits, labels)), AXIS),
        "nonfinite": jnp.logical_not(finite),
    }
    return new_state, metrics


def view_mean_logits(apply_fn, variables, inputs):
    """Logits [b, C] of images [b, H, W, 3] or cached features [b, D]; of views of each (images
    [b, V, H, W, 3], features [b, V, D]: `data.views`), the mean of the views' logits."""
    if inputs.ndim not in (3, 5):
        return apply_fn(variables, inputs, train=False)
    views = models.per_view(lambda x: apply_fn(variables, x, train=False), inputs)
    return jnp.mean(views, axis=1)


def eval_step(state: TrainState, batch, *, apply_fn=None, multi_label_loss: str = "sigmoid"):
    """Logits for this device's images (or cached features, with the head's `apply_fn`; averaged
    over views where there are several), plus masked sums over all devices."""
    logits = view_mean_logits(
        apply_fn or state.apply_fn, _variables(state, state.params), batch["image"]
    )
    mask = batch["mask"].astype(jnp.float32)
    labels = batch["label"]
    if is_multi_label(labels):
        losses = example_losses(logits, labels, 0.0, multi_label_loss)
    else:
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    sums = {
        "loss": jax.lax.psum(jnp.sum(losses * mask), AXIS),
        "correct": jax.lax.psum(jnp.sum(top1_hits(logits, labels) * mask), AXIS),
        "count": jax.lax.psum(jnp.sum(mask), AXIS),
    }
    return logits, sums
