"""optax optimizers and learning-rate schedules from `config.optimizer`."""

from __future__ import annotations

import jax
import optax

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "warmup_cosine")


def create_schedule(opt, steps_per_epoch: int, num_epochs: int) -> optax.Schedule:
    total = max(1, steps_per_epoch * num_epochs)
    if opt.schedule == "constant":
        return optax.constant_schedule(opt.learning_rate)
    if opt.schedule == "cosine":
        return optax.cosine_decay_schedule(opt.learning_rate, total)
    if opt.schedule == "warmup_cosine":
        warmup = min(total - 1, int(opt.warmup_epochs * steps_per_epoch))
        return optax.warmup_cosine_decay_schedule(0.0, opt.learning_rate, warmup, total)
    raise ValueError(f"optimizer.schedule {opt.schedule!r} is not one of {SCHEDULES}")


def _kernels_only(params):
    """Weight decay applies to conv/dense kernels, not to biases or BatchNorm scales."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(opt, steps_per_epoch: int, num_epochs: int) -> optax.GradientTransformation:
    schedule = create_schedule(opt, steps_per_epoch, num_epochs)
    if opt.name == "adam":
        core = optax.adam(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps)
    elif opt.name == "adamw":
        core = optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay,
                           mask=_kernels_only)
    elif opt.name == "sgd":
        core = optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov)
    elif opt.name == "rmsprop":
        core = optax.rmsprop(schedule, decay=opt.rmsprop_decay, eps=opt.eps, momentum=opt.momentum or None)
    else:
        raise ValueError(f"optimizer.name {opt.name!r} is not one of {OPTIMIZERS}")
    chain = []
    if opt.grad_clip_norm:
        chain.append(optax.clip_by_global_norm(opt.grad_clip_norm))
    if opt.weight_decay and opt.name != "adamw":  # L2 added to the gradient (coupled decay)
        chain.append(optax.add_decayed_weights(opt.weight_decay, mask=_kernels_only))
    return optax.chain(*chain, core)
