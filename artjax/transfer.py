"""Transfer learning: initial weights, which layers train, BatchNorm treatment, and cached features.

- `config.init.checkpoint`: a ported ImageNet checkpoint (`python -m artjax.port`), whose classifier
  `head` is replaced for the configured classes, or a training workdir (its best checkpoint, head
  included, same classes). Merging is strict: missing, unexpected and mis-shaped keys are listed.
- `config.freeze.trainable`: "all"; "head" (frozen backbone); "last_fraction" (the last
  `freeze.fraction` of the layers that own parameters, in forward order, as the study unfroze the last
  20% of ResNet50's layers); or "modules" (`freeze.modules`, e.g. "stage4,head" or "block16,top_conv").
  Frozen parameters get no gradient (it is not even computed) and no update (optax.multi_transform
  with set_to_zero); trainable backbone layers use `config.backbone_optimizer` when it names one (the
  lower learning rate and other optimizer of fine-tuning), the head uses `config.optimizer`.
- BatchNorm: layers in the frozen part always run in inference mode with fixed statistics (Keras's
  rule for a non-trainable BatchNormalization). `freeze.batch_norm="frozen"` keeps the trainable
  part's statistics fixed too (only their scale and offset learn: stable with small batches);
  "trainable" lets them update in training mode.
- A frozen backbone without augmentation (`freeze.cache_features`) computes each image's pooled
  features once; the head then trains on them, minutes on a CPU. The saved checkpoints hold the whole
  model, so evaluation and prediction run on images as usual.
"""

from __future__ import annotations

import dataclasses
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from artjax import checkpointing, optim, port
from artjax import input_pipeline as ip

TRAINABLE = ("all", "head", "last_fraction", "modules")
BATCH_NORM = ("frozen", "trainable")
HEAD = "head"


class WeightsMismatchError(ValueError):
    pass


# --- which layers train -----------------------------------------------------------------------------------

def layer_paths(model: nn.Module, image_size: int) -> tuple[list[str], set[str]]:
    """Paths ("stage1_block1/conv1") of the modules that own parameters, in forward order, and those of
    the BatchNorm layers among them (from one abstract trace of `model.init`)."""
    order = []

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__":
            order.append("/".join(context.module.path))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, image_size, image_size, 3))))
    owners = {"/".join(k[:-1]) for k in traverse_util.flatten_dict(variables["params"])}
    seen = []
    for path in order:
        if path in owners and path not in seen:
            seen.append(path)
    norms = {"/".join(k[:-1]) for k in traverse_util.flatten_dict(variables.get("batch_stats", {}))}
    return seen, norms


@dataclasses.dataclass(frozen=True)
class Plan:
    trainable: tuple[str, ...]  # layer paths that train
    frozen_norms: tuple[str, ...]  # BatchNorm layers kept in inference mode while training
    frozen_backbone: bool  # only the head trains

    def label(self, path: str) -> str:
        if path == HEAD or path.startswith(HEAD + "/"):
            return "head"
        return "backbone" if path in self.trainable else "frozen"


def plan(freeze_config, paths: list[str], norm_paths: set[str]) -> Plan:
    mode = freeze_config.trainable
    if mode not in TRAINABLE:
        raise ValueError(f"freeze.trainable {mode!r} is not one of {TRAINABLE}")
    if freeze_config.batch_norm not in BATCH_NORM:
        raise ValueError(f"freeze.batch_norm {freeze_config.batch_norm!r} is not one of {BATCH_NORM}")
    if mode == "all":
        trainable = list(paths)
    elif mode == "head":
        trainable = [p for p in paths if p == HEAD]
    elif mode == "last_fraction":
        if not 0.0 <= freeze_config.fraction <= 1.0:
            raise ValueError(f"freeze.fraction {freeze_config.fraction} is not in [0, 1]")
        backbone = [p for p in paths if p != HEAD]
        count = int(np.ceil(freeze_config.fraction * len(backbone)))
        trainable = backbone[len(backbone) - count:] + [HEAD]
    else:
        names = [n.strip() for n in freeze_config.modules.split(",") if n.strip()]
        top = {p.split("/")[0] for p in paths}
        matches = lambda p, n: p.split("/")[0] == n or p.split("/")[0].startswith(n + "_")
        unknown = [n for n in names if not any(matches(p, n) for p in paths)]
        if unknown or not names:
            raise ValueError(f"freeze.modules {unknown or names} name(s) no module of this model; "
                             f"its top-level modules are {sorted(top)}")
        trainable = [p for p in paths if any(matches(p, n) for n in names)] + [HEAD]
    trainable = tuple(dict.fromkeys(trainable))
    # Frozen layers' BatchNorm always runs in inference mode; the trainable part's per freeze.batch_norm.
    keep_training = set(trainable) if freeze_config.batch_norm == "trainable" else set()
    frozen_norms = tuple(sorted(p for p in norm_paths if p not in keep_training))
    return Plan(trainable, frozen_norms, frozen_backbone=trainable == (HEAD,))


def trainable_keys(params, the_plan: Plan) -> frozenset:
    """Flattened parameter keys that receive gradients."""
    return frozenset(k for k in traverse_util.flatten_dict(params) if the_plan.label("/".join(k[:-1])) != "frozen")


def create_optimizer(config, the_plan: Plan, params, steps_per_epoch: int) -> optax.GradientTransformation:
    """config.optimizer for the head (and everything, when nothing is frozen and no backbone optimizer is
    named); config.backbone_optimizer for trainable backbone layers; nothing for frozen ones."""
    head = optim.create_optimizer(config.optimizer, steps_per_epoch, config.num_epochs)
    flat = traverse_util.flatten_dict(params)
    labels = {k: the_plan.label("/".join(k[:-1])) for k in flat}
    if "frozen" not in labels.values() and not config.backbone_optimizer.name:
        return head
    if set(labels.values()) == {"frozen"}:
        raise ValueError("no parameter is trainable under this freeze config")
    backbone_config = config.backbone_optimizer if config.backbone_optimizer.name else config.optimizer
    backbone = optim.create_optimizer(backbone_config, steps_per_epoch, config.num_epochs)
    return optax.multi_transform({"head": head, "backbone": backbone, "frozen": optax.set_to_zero()},
                                 traverse_util.unflatten_dict(labels))


# --- initial weights ------------------------------------------------------------------------------------

def merge_strict(fresh: dict, loaded: dict, source: str, replace=(HEAD,)) -> dict:
    """`loaded` variables in the structure of `fresh`, except modules in `replace` (kept from `fresh`).
    Anything missing, unexpected or of another shape is an error listing it."""
    fresh_flat, loaded_flat = traverse_util.flatten_dict(fresh), traverse_util.flatten_dict(loaded)
    replaced = lambda k: k[1] in replace
    missing = [k for k in fresh_flat if k not in loaded_flat and not replaced(k)]
    unexpected = [k for k in loaded_flat if k not in fresh_flat and not replaced(k)]
    shapes = [f"{'/'.join(k)}: model {tuple(fresh_flat[k].shape)}, file {tuple(np.shape(loaded_flat[k]))}"
              for k in fresh_flat if k in loaded_flat and not replaced(k)
              and tuple(fresh_flat[k].shape) != tuple(np.shape(loaded_flat[k]))]
    if missing or unexpected or shapes:
        lines = [f"{source}: the weights do not fit this model."]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shapes", shapes)):
            if items:
                lines.append(f"{title} ({len(items)}): {port._listing(items)}")
        raise WeightsMismatchError("\n".join(lines))
    merged = {k: (v if replaced(k) else jnp.asarray(loaded_flat[k], v.dtype)) for k, v in fresh_flat.items()}
    return traverse_util.unflatten_dict(merged)


def load_initial_variables(init_config, fresh: dict, model_config, data_config, classes) -> dict:
    """Variables to start from: a ported checkpoint (head replaced) or a training workdir (best step)."""
    path = pathlib.Path(init_config.checkpoint).expanduser()
    if (path / port.META_FILE).is_file():
        loaded, meta = port.load(path)
        arch = {k: model_config[k] for k in meta["architecture"]}
        if arch != meta["architecture"]:
            raise WeightsMismatchError(f"{path} holds {meta['architecture']}; the config builds {arch}")
        if data_config.normalization != meta["normalization"]:
            raise WeightsMismatchError(
                f"{path} expects data.normalization={meta['normalization']!r}; the config has "
                f"{data_config.normalization!r}")
        return merge_strict(fresh, loaded, str(path))
    if (path / checkpointing.RUN_FILE).is_file():
        run = checkpointing.read_run(path)
        if list(run["classes"]) != list(classes):
            raise WeightsMismatchError(f"{path} was trained on classes {run['classes']}, this config has {list(classes)}")
        ckpt = checkpointing.Checkpoints(path, run["config"]["keep_checkpoints"], run["config"]["best_metric"])
        step = ckpt.resolve(init_config.workdir_checkpoint)
        restored = ckpt.restore(step)
        ckpt.close()
        loaded = {"params": restored["params"]}
        if restored.get("batch_stats"):
            loaded["batch_stats"] = restored["batch_stats"]
        return merge_strict(fresh, loaded, f"{path} (step {step})", replace=())
    raise FileNotFoundError(f"init.checkpoint {path}: neither ported weights ({port.META_FILE}) nor a training "
                            f"workdir ({checkpointing.RUN_FILE})")


# --- cached features --------------------------------------------------------------------------------------

def uses_cached_features(config, the_plan: Plan) -> bool:
    return bool(the_plan.frozen_backbone and config.freeze.cache_features and not config.data.augment_enabled)


def compute_features(p_features, variables, batches) -> dict[str, np.ndarray]:
    """Pooled backbone features of every real image in `batches` (eval_dataset batches)."""
    found = {"features": [], "label": [], "filename": []}
    for batch in batches:
        mask = batch["mask"].reshape(-1) == 1
        features = np.asarray(p_features(variables, batch["image"]), np.float32)
        found["features"].append(features.reshape(mask.size, -1)[mask])
        found["label"].append(batch["label"].reshape(-1)[mask])
        found["filename"].append(batch["filename"].reshape(-1)[mask])
    return {k: np.concatenate(v) for k, v in found.items()}


def feature_train_batches(features: dict, config, num_devices: int, start_step: int, counts):
    """Endless shuffled batches of cached features, [devices, per-device, D]; reproducible per step, so a
    resumed run continues the same stream. Oversampling follows `data.oversample_power`. Each process
    holds the features of its own shard and draws its share of the global batch."""
    n, batch = len(features["label"]), ip.local_batch_size(config.batch_size, num_devices)
    steps_per_epoch = n // batch
    probs = None
    if config.data.oversample_power is not None:
        counts = np.asarray(counts, np.float64)
        class_p = np.where(counts > 0, counts ** config.data.oversample_power, 0.0)
        class_p /= class_p.sum()
        probs = class_p[features["label"]] / counts[features["label"]]
        probs /= probs.sum()
    step = start_step
    while True:
        epoch, i = divmod(step, steps_per_epoch)
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(n) if probs is None else rng.choice(n, size=n, p=probs)
        idx = order[i * batch:(i + 1) * batch]
        yield {"image": features["features"][idx].reshape(num_devices, batch // num_devices, -1),
               "label": features["label"][idx].astype(np.int32).reshape(num_devices, -1)}
        step += 1


def feature_eval_batches(features: dict, config, num_devices: int, split_size: int):
    """Padded, masked batches of cached features, laid out (and padded to the same batch count on every
    process) as eval_dataset lays out images; `split_size` counts the split's images on all processes."""
    n, batch = len(features["label"]), ip.local_batch_size(config.eval_batch_size, num_devices)
    per_process = -(-split_size // jax.process_count())
    padded = -(-per_process // batch) * batch
    pad = padded - n
    feats = np.concatenate([features["features"], np.zeros((pad, features["features"].shape[1]), np.float32)])
    labels = np.concatenate([features["label"], np.zeros(pad, features["label"].dtype)]).astype(np.int32)
    mask = np.concatenate([np.ones(n, np.int32), np.zeros(pad, np.int32)])
    names = np.concatenate([features["filename"], np.array([b""] * pad, dtype=object)])
    for s in range(0, padded, batch):
        sl = slice(s, s + batch)
        yield {"image": feats[sl].reshape(num_devices, batch // num_devices, -1),
               "label": labels[sl].reshape(num_devices, -1), "mask": mask[sl].reshape(num_devices, -1),
               "filename": names[sl].reshape(num_devices, -1)}


def features_apply(model):
    """apply_fn of a head trained on cached features."""
    def apply(variables, features, **kwargs):
        return model.apply(variables, features, input_is_features=True, **kwargs)
    return apply
