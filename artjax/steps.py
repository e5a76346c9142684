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
    """Device 0's copy of a pmap'd tree, on the host (numpy), without gathering the others.
    (flax.jax_utils.unreplicate returns the leading device axis intact when pmap ran on one of
    several local devices.) One transfer of the whole tree, then numpy views: indexing each leaf
    on the device would dispatch an operation per leaf."""
    shards = jax.device_get(jax.tree.map(lambda x: x.addressable_shards[0].data, tree))
    return jax.tree.map(lambda x: x[0, ...], shards)  # arrays, 0-d ones too (not numpy scalars)


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
        "partial": lambda logits, targets, smoothing: partial_label_loss(
            logits, targets, smoothing
        ),
    },
)


def partial_label_loss(logits, targets, smoothing: float = 0.0):
    """-log of the total softmax probability of the listed classes (a partial label: the true
    class is one of them), smoothed as optax.smooth_labels smooths a one-hot target: (1 - s) times
    that plus s times the mean over the classes of -log p. A single listed class gives the
    smoothed cross-entropy."""
    log_p = jax.nn.log_softmax(logits)
    listed = jax.nn.logsumexp(jnp.where(targets > 0, log_p, -jnp.inf), axis=-1)
    return -(1.0 - smoothing) * listed - smoothing * jnp.mean(log_p, axis=-1)


def _outside(estimate, target):
    """Distance from the estimate to the interval target = (start, end); 0 inside it."""
    return jnp.maximum(target[..., 0] - estimate, 0.0) + jnp.maximum(estimate - target[..., 1], 0.0)


def era_bin_targets(period, edges):
    """[B, 2] periods, [K + 1] bin edges (era units) -> [B, K]: each bin's share of the period
    (the length they overlap, normalized; a period of no length: the bin it falls in)."""
    start = period[..., :1]
    end = jnp.maximum(period[..., 1:], start + 1e-4)
    overlap = jnp.clip(jnp.minimum(end, edges[1:]) - jnp.maximum(start, edges[:-1]), 0.0)
    return overlap / jnp.maximum(jnp.sum(overlap, -1, keepdims=True), 1e-9)


# era.loss -> (the era head's outputs [B, 1] or bin logits [B, K], the artist's active period
# [B, 2], bin edges [K + 1] or None) -> per-example loss, in `artjax.era` units
ERA_LOSSES = Registry(
    "era.loss",
    {
        # inside the artist's period costs nothing: the painting's own date is not known
        "interval": lambda outputs, target, edges: _outside(outputs[..., 0], target),
        "midpoint": lambda outputs, target, edges: jnp.abs(outputs[..., 0] - jnp.mean(target, -1)),
        "bins": lambda outputs, target, edges: optax.softmax_cross_entropy(
            outputs, era_bin_targets(target, edges)
        ),
    },
)


def era_losses(name: str, outputs, target, edges):
    """ERA_LOSSES[name] per example, 0 for an undated painting (a NaN target:
    input_pipeline.era_targets), whose date is never guessed."""
    known = jnp.all(jnp.isfinite(target), -1)
    losses = ERA_LOSSES[name](outputs, jnp.where(known[:, None], target, 0.0), edges)
    return jnp.where(known, losses, 0.0)


def is_multi_label(labels) -> bool:
    """Single-label batches carry class indices [B]; multi-label ones multi-hot targets [B, C]."""
    return labels.ndim == 2


def example_losses(
    logits, labels, label_smoothing: float, multi_label_loss: str = "sigmoid", target_matrix=None
):
    """Per-example loss: softmax cross-entropy against the (smoothed) class, or the multi-label
    loss against the listed classes. `target_matrix` [C, C]: row c is class c's target
    distribution (`time_soft_targets`) in place of its one-hot vector."""
    if is_multi_label(labels):
        return MULTI_LABEL_LOSSES[multi_label_loss](logits, labels, label_smoothing)
    if target_matrix is None:
        targets = jax.nn.one_hot(labels, logits.shape[-1])
    else:
        targets = jnp.asarray(target_matrix)[labels]
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def time_soft_targets(classes, neighbours: dict, share: float) -> np.ndarray:
    """[C, C]: row c gives class c 1 - `share` and its neighbours in time (`neighbours[c]`,
    `data.catalog.time_neighbours`) `share` split equally; a class without any keeps 1."""
    index = {c: i for i, c in enumerate(classes)}
    found = np.eye(len(classes), dtype=np.float32)
    for c, around in neighbours.items():
        if around:
            found[index[c], index[c]] = 1.0 - share
            for n in around:
                found[index[c], index[n]] = share / len(around)
    return found


def coral_loss(outputs, labels, artists, num_classes: int, num_artists: int):
    """CORAL (Sun & Saenko) with artists as domains, within each class: the mean over the
    artists with two or more examples here of ||C_artist - C_class||_F^2 / (4 d^2), where C is
    the covariance of `outputs` [B, d] over the artist's examples and over all of the class's
    (normalized by the count, so that artists with the same outputs have the class's covariance:
    zero when every artist of a class has the same distribution of outputs)."""
    d = outputs.shape[-1]

    def covariances(members):  # members [B, G] one-hot -> [G] counts, [G, d, d] covariances
        count = jnp.sum(members, 0)
        mean = (members.T @ outputs) / jnp.maximum(count, 1.0)[:, None]
        centred = outputs[None] - mean[:, None]  # [G, B, d]
        weighted = centred * members.T[:, :, None]
        cov = jnp.einsum("gbi,gbj->gij", weighted, centred) / jnp.maximum(count, 1.0)[:, None, None]
        return count, cov

    of_artist, of_class = jax.nn.one_hot(artists, num_artists), jax.nn.one_hot(labels, num_classes)
    artist_count, artist_cov = covariances(of_artist)
    class_count, class_cov = covariances(of_class)
    # each artist's class: the class of its examples here (an artist has one class)
    artist_class = jnp.argmax(of_artist.T @ of_class, -1)
    gaps = jnp.sum((artist_cov - class_cov[artist_class]) ** 2, axis=(1, 2)) / (4.0 * d * d)
    counted = (artist_count >= 2) & (class_count[artist_class] > artist_count)
    return jnp.sum(jnp.where(counted, gaps, 0.0)) / jnp.maximum(jnp.sum(counted), 1.0)


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
    era_weight: float = 0.0,
    era_loss: str = "interval",
    target_matrix=None,
    coral_weight: float = 0.0,
    num_artists: int = 0,
    era_edges=None,
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

    `era_weight` > 0: `apply_fn` returns (logits, the era head's outputs) and the batch holds each
    example's artist's active period (`era`, [B, 2] in `artjax.era` units); the loss adds
    `era_weight` times the `era_loss` (`ERA_LOSSES`; "bins" over the bins of `era_edges`),
    weighted and normalized as the style loss.

    `target_matrix` [C, C]: single-label targets are its rows (`time_soft_targets`).

    `coral_weight` > 0: the batch holds each example's artist (`artist`, ids < `num_artists`) and
    the loss adds `coral_weight` times `coral_loss` of this device's logits (with a frozen
    backbone, the head's output is the only representation that trains).
    """
    apply_fn = apply_fn or state.apply_fn
    rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), jax.lax.axis_index(AXIS))
    labels, inputs = batch["label"], batch["image"]
    weights = example_weights(class_weights, labels)
    if coral_weight and (mixup_alpha or is_multi_label(labels)):
        raise ValueError("coral_weight: single-label classes without mixup_alpha")
    if era_weight and mixup_alpha:
        raise ValueError(
            "mixup_alpha with an era head: mixing paintings of two periods is not "
            "defined; set one of them to 0"
        )
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
        outputs, updates = apply_fn(
            _variables(state, params),
            inputs,
            train=True,
            rngs={"dropout": rng},
            mutable=["batch_stats"],
        )
        logits = outputs[0] if era_weight else outputs
        losses = example_losses(logits, labels, label_smoothing, multi_label_loss, target_matrix)
        if era_weight:
            losses = losses + era_weight * era_losses(era_loss, outputs[1], batch["era"], era_edges)
        if not mixup_alpha:
            loss = jnp.sum(losses * weights) / denominator
            if coral_weight:
                # per device: a device's share of the mean over devices (the psum below)
                coral = coral_loss(logits, labels, batch["artist"], logits.shape[-1], num_artists)
                loss = loss + coral_weight * coral / jax.lax.psum(1, AXIS)
            return loss, (logits, updates)
        partner_losses = example_losses(
            logits, labels[partner], label_smoothing, multi_label_loss, target_matrix
        )
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
    return jax.tree.map(lambda v: jnp.mean(v, axis=1), views)  # logits, or (logits, era)


def eval_step(
    state: TrainState,
    batch,
    *,
    apply_fn=None,
    multi_label_loss: str = "sigmoid",
    with_era: bool = False,
):
    """Logits for this device's images (or cached features, with the head's `apply_fn`; averaged
    over views where there are several), plus masked sums over all devices. `with_era`: the
    `apply_fn` returns (logits, era estimates) (`models.call_with_era`: one backbone pass for
    both), and so do the outputs, each a mean over the views."""
    variables = _variables(state, state.params)
    outputs = view_mean_logits(apply_fn or state.apply_fn, variables, batch["image"])
    logits = outputs[0] if with_era else outputs
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
    return outputs, sums
