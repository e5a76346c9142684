"""optax optimizers and learning-rate schedules from a config's `optimizer` section."""

from __future__ import annotations

import jax
import optax

from artjax.registry import Registry


def _warmup_cosine(opt, total: int, steps_per_epoch: int) -> optax.Schedule:
    warmup = min(total - 1, int(opt.warmup_epochs * steps_per_epoch))
    return optax.warmup_cosine_decay_schedule(0.0, opt.learning_rate, warmup, total)


# optimizer.schedule -> (opt, total steps, steps per epoch) -> schedule
SCHEDULES = Registry(
    "optimizer.schedule",
    {
        "constant": lambda opt, total, steps_per_epoch: optax.constant_schedule(opt.learning_rate),
        "cosine": lambda opt, total, steps_per_epoch: optax.cosine_decay_schedule(
            opt.learning_rate, total
        ),
        "warmup_cosine": _warmup_cosine,
    },
)


def _kernels_only(params):
    """Weight decay applies to conv/dense kernels, not to biases or BatchNorm scales."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


# optimizer.name -> (opt, schedule) -> the core transformation
OPTIMIZERS = Registry(
    "optimizer.name",
    {
        "adam": lambda opt, lr: optax.adam(lr, b1=opt.b1, b2=opt.b2, eps=opt.eps),
        "adamw": lambda opt, lr: optax.adamw(
            lr, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay, mask=_kernels_only
        ),
        "sgd": lambda opt, lr: optax.sgd(lr, momentum=opt.momentum or None, nesterov=opt.nesterov),
        "rmsprop": lambda opt, lr: optax.rmsprop(
            lr, decay=opt.rmsprop_decay, eps=opt.eps, momentum=opt.momentum or None
        ),
    },
)
DECOUPLED_DECAY = ("adamw",)  # optimizers that apply optimizer.weight_decay themselves


def create_schedule(opt, steps_per_epoch: int, num_epochs: int) -> optax.Schedule:
    return SCHEDULES[opt.schedule](opt, max(1, steps_per_epoch * num_epochs), steps_per_epoch)


def create_optimizer(opt, steps_per_epoch: int, num_epochs: int) -> optax.GradientTransformation:
    core = OPTIMIZERS[opt.name](opt, create_schedule(opt, steps_per_epoch, num_epochs))
    chain = []
    if opt.grad_clip_norm:
        chain.append(optax.clip_by_global_norm(opt.grad_clip_norm))
    if (
        opt.weight_decay and opt.name not in DECOUPLED_DECAY
    ):  # L2 added to the gradient (coupled decay)
        chain.append(optax.add_decayed_weights(opt.weight_decay, mask=_kernels_only))
    return optax.chain(*chain, core)
