"""Transfer learning: initial weights, which layers train, BatchNorm treatment, and cached features.

- `config.init.checkpoint`: a ported ImageNet checkpoint (`python -m artjax.port`), whose classifier
  `head` is replaced for the configured classes, or a training workdir (its best checkpoint, head
  included, same classes). Merging is strict: missing, unexpected and mis-shaped keys are listed.
- `config.freeze.trainable`: "all"; "head" (frozen backbone); "top_conv" (EfficientNet-Lite's
  last 1x1 convolution and its BatchNorm, and the heads); "last_fraction" (the last
  `freeze.fraction` of the layers that own parameters, in forward order, as the study unfroze the
  last 20% of ResNet50's layers); or "modules" (`freeze.modules`, e.g. "stage4,head" or
  "block16,top_conv"). Frozen parameters get no gradient (it is not even computed) and no update
  (optax.multi_transform with set_to_zero); trainable backbone layers use
  `config.backbone_optimizer` when it names one (the
  lower learning rate and other optimizer of fine-tuning), the head uses `config.optimizer`.
- BatchNorm: layers in the frozen part always run in inference mode with fixed statistics (Keras's
  rule for a non-trainable BatchNormalization). `freeze.batch_norm="frozen"` keeps the trainable
  part's statistics fixed too (only their scale and offset learn: stable with small batches);
  "trainable" lets them update in training mode.
- A frozen backbone without augmentation (`freeze.cache_features`, `uses_cached_features`) computes
  each image's pooled features once (`artjax.data.feature_batches`); the head then trains on them,
  minutes on a CPU. The saved checkpoints hold the whole model, so evaluation and prediction run on
  images as usual.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from artjax import checkpointing, models, optim
from artjax.models import concatenated, porting
from artjax.registry import Registry

HEAD = "head"
# the classifier, and where the model has them the era head and the hidden layer they share
HEADS = (HEAD, "era_head", "head_hidden_layer")


class WeightsMismatchError(ValueError):
    pass


# --- which layers train
# -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def layer_paths(model: nn.Module, image_size: int) -> tuple[tuple[str, ...], frozenset[str]]:
    """Paths ("stage1_block1/conv1") of the modules that own parameters, in forward order, and those
    of the BatchNorm layers among them (from one abstract trace of `model.init`; kept per model and
    size, since training, calibrating and loading a run each ask, and a trace of a large model costs
    seconds)."""
    order = []

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__":
            order.append("/".join(context.module.path))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        variables = models.abstract_variables(model, image_size)
    owners = {"/".join(k[:-1]) for k in traverse_util.flatten_dict(variables["params"])}
    seen = []
    for path in order:
        if path in owners and path not in seen:
            seen.append(path)
    norms = {"/".join(k[:-1]) for k in traverse_util.flatten_dict(variables.get("batch_stats", {}))}
    return tuple(seen), frozenset(norms)


@dataclasses.dataclass(frozen=True)
class Plan:
    trainable: tuple[str, ...]  # layer paths that train
    frozen_norms: tuple[str, ...]  # BatchNorm layers kept in inference mode while training
    frozen_backbone: bool  # only the head trains

    def label(self, path: str) -> str:
        if path.split("/")[0] in HEADS:
            return "head"
        return "backbone" if path in self.trainable else "frozen"


def _heads(paths: tuple[str, ...]) -> list[str]:
    return [p for p in paths if p in HEADS]


def _last_fraction(freeze_config, paths: tuple[str, ...]) -> list[str]:
    if not 0.0 <= freeze_config.fraction <= 1.0:
        raise ValueError(f"freeze.fraction {freeze_config.fraction} is not in [0, 1]")
    backbone = [p for p in paths if p not in HEADS]
    count = int(np.ceil(freeze_config.fraction * len(backbone)))
    return backbone[len(backbone) - count :] + _heads(paths)


def _named_modules(freeze_config, paths: tuple[str, ...]) -> list[str]:
    names = [n.strip() for n in freeze_config.modules.split(",") if n.strip()]
    top = {p.split("/")[0] for p in paths}
    matches = lambda p, n: p.split("/")[0] == n or p.split("/")[0].startswith(n + "_")
    unknown = [n for n in names if not any(matches(p, n) for p in paths)]
    if unknown or not names:
        raise ValueError(
            f"freeze.modules {unknown or names} name(s) no module of this model; "
            f"its top-level modules are {sorted(top)}"
        )
    return [p for p in paths if any(matches(p, n) for n in names)] + _heads(paths)


TOP = "top_"  # EfficientNet-Lite's last 1x1 convolution and its BatchNorm: top_conv, top_bn


def _top_conv(freeze_config, paths: tuple[str, ...]) -> list[str]:
    top = [p for p in paths if p.split("/")[0].startswith(TOP)]
    if not top:
        raise ValueError(
            "freeze.trainable='top_conv': this model has no top convolution (top_conv, top_bn); "
            f"its top-level modules are {sorted({p.split('/')[0] for p in paths})}"
        )
    return top + _heads(paths)


# freeze.trainable -> (freeze config, layer paths in forward order) -> the paths that train
TRAINABLE = Registry(
    "freeze.trainable",
    {
        "all": lambda freeze_config, paths: list(paths),
        "head": lambda freeze_config, paths: _heads(paths),
        # the last 1x1 convolution before pooling (and its BatchNorm): the features' last mixing
        "top_conv": _top_conv,
        "last_fraction": _last_fraction,
        "modules": _named_modules,
    },
)

# The points of the unfreezing curve (experiments/style.py, `artjax.bench finetune`): a name ->
# the freeze settings it stands for, from the head alone to the whole network.
DEPTHS = Registry(
    "depth",
    {
        "head": dict(trainable="head"),
        "top_conv": dict(trainable="top_conv"),
        "last20": dict(trainable="last_fraction", fraction=0.2),
        "last50": dict(trainable="last_fraction", fraction=0.5),
        "whole": dict(trainable="all"),
    },
)


def apply_depth(config, depth: str) -> None:
    """Sets `config.freeze` to the trainable share that `depth` names (DEPTHS)."""
    for key, value in DEPTHS[depth].items():
        config.freeze[key] = value


# freeze.batch_norm -> (trainable paths) -> the BatchNorm paths that keep training mode
BATCH_NORM = Registry(
    "freeze.batch_norm",
    {"frozen": lambda trainable: set(), "trainable": lambda trainable: set(trainable)},
)


def plan(freeze_config, paths: tuple[str, ...], norm_paths: frozenset[str]) -> Plan:
    select, keep_training = TRAINABLE[freeze_config.trainable], BATCH_NORM[freeze_config.batch_norm]
    trainable = tuple(dict.fromkeys(select(freeze_config, paths)))
    # Frozen layers' BatchNorm always runs in inference mode; the trainable part's per
    # freeze.batch_norm.
    frozen_norms = tuple(sorted(p for p in norm_paths if p not in keep_training(trainable)))
    frozen_backbone = bool(trainable) and set(trainable) <= set(HEADS)
    return Plan(trainable, frozen_norms, frozen_backbone=frozen_backbone)


def trainable_keys(params, the_plan: Plan) -> frozenset:
    """Flattened parameter keys that receive gradients."""
    return frozenset(
        k
        for k in traverse_util.flatten_dict(params)
        if the_plan.label("/".join(k[:-1])) != "frozen"
    )


def create_optimizer(
    config, the_plan: Plan, params, steps_per_epoch: int
) -> optax.GradientTransformation:
    """config.optimizer for the head (and everything, when nothing is frozen and no backbone
    optimizer is named); config.backbone_optimizer for trainable backbone layers; nothing for frozen
    ones."""
    head = optim.create_optimizer(config.optimizer, steps_per_epoch, config.num_epochs)
    flat = traverse_util.flatten_dict(params)
    labels = {k: the_plan.label("/".join(k[:-1])) for k in flat}
    if "frozen" not in labels.values() and not config.backbone_optimizer.name:
        return head
    if set(labels.values()) == {"frozen"}:
        raise ValueError("no parameter is trainable under this freeze config")
    backbone_config = (
        config.backbone_optimizer if config.backbone_optimizer.name else config.optimizer
    )
    backbone = optim.create_optimizer(backbone_config, steps_per_epoch, config.num_epochs)
    return optax.multi_transform(
        {"head": head, "backbone": backbone, "frozen": optax.set_to_zero()},
        traverse_util.unflatten_dict(labels),
    )


# --- initial weights
# ------------------------------------------------------------------------------------


def merge_strict(fresh: dict, loaded: dict, source: str, replace=HEADS) -> dict:
    """`loaded` variables in the structure of `fresh`, except modules in `replace` (kept from
    `fresh`).
    Anything missing, unexpected or of another shape is an error listing it."""
    fresh_flat, loaded_flat = traverse_util.flatten_dict(fresh), traverse_util.flatten_dict(loaded)
    replaced = lambda k: k[1] in replace
    missing = [k for k in fresh_flat if k not in loaded_flat and not replaced(k)]
    unexpected = [k for k in loaded_flat if k not in fresh_flat and not replaced(k)]
    shapes = [
        f"{'/'.join(k)}: model {tuple(fresh_flat[k].shape)}, file {tuple(np.shape(loaded_flat[k]))}"
        for k in fresh_flat
        if k in loaded_flat
        and not replaced(k)
        and tuple(fresh_flat[k].shape) != tuple(np.shape(loaded_flat[k]))
    ]
    if missing or unexpected or shapes:
        lines = [f"{source}: the weights do not fit this model."] + porting.mismatch_lines(
            missing, unexpected, shapes
        )
        raise WeightsMismatchError("\n".join(lines))
    merged = {
        k: (v if replaced(k) else jnp.asarray(loaded_flat[k], v.dtype))
        for k, v in fresh_flat.items()
    }
    return traverse_util.unflatten_dict(merged)


def load_initial_variables(init_config, fresh: dict, model_config, data_config, classes) -> dict:
    """Variables to start from: a ported checkpoint (head replaced) or a training workdir (best
    step)."""
    if model_config.name == "efficientnet_lite_concat":
        return _concatenated_ports(init_config, fresh, model_config, data_config)
    path = pathlib.Path(init_config.checkpoint).expanduser()
    if (path / porting.META_FILE).is_file():
        loaded, meta = porting.load(path)
        arch = {k: model_config[k] for k in meta["architecture"]}
        if arch != meta["architecture"]:
            raise WeightsMismatchError(
                f"{path} holds {meta['architecture']}; the config builds {arch}"
            )
        if data_config.normalization != meta["normalization"]:
            raise WeightsMismatchError(
                f"{path} expects data.normalization={meta['normalization']!r}; the config has "
                f"{data_config.normalization!r}"
            )
        return merge_strict(fresh, loaded, str(path))
    if (path / checkpointing.RUN_FILE).is_file():
        run = checkpointing.read_run(path)
        if list(run["classes"]) != list(classes):
            raise WeightsMismatchError(
                f"{path} was trained on classes {run['classes']}, this config has {list(classes)}"
            )
        ckpt = checkpointing.Checkpoints(
            path, run["config"]["keep_checkpoints"], run["config"]["best_metric"]
        )
        try:
            step, restored = ckpt.restore_named(init_config.workdir_checkpoint)
        finally:
            ckpt.close()
        loaded = {"params": restored["params"]}
        if restored.get("batch_stats"):
            loaded["batch_stats"] = restored["batch_stats"]
        return merge_strict(fresh, loaded, f"{path} (step {step})", replace=())
    raise FileNotFoundError(
        f"init.checkpoint {path}: neither ported weights ({porting.META_FILE}) nor a training "
        f"workdir ({checkpointing.RUN_FILE})"
    )


def _concatenated_ports(init_config, fresh: dict, model_config, data_config) -> dict:
    """Each backbone of a concatenated model from its own ported checkpoint (init.checkpoint:
    one per `model.lite_versions`, comma-separated, in that order); their heads are dropped."""
    paths = [pathlib.Path(p.strip()).expanduser() for p in init_config.checkpoint.split(",")]
    versions = tuple(model_config.lite_versions)
    if len(paths) != len(versions):
        raise WeightsMismatchError(
            f"init.checkpoint names {len(paths)} checkpoint(s) for model.lite_versions {versions}: "
            "one ported checkpoint per backbone, comma-separated, in that order"
        )
    loaded = {}
    for version, path in zip(versions, paths):
        if not (path / porting.META_FILE).is_file():
            raise FileNotFoundError(
                f"init.checkpoint {path}: no ported weights ({porting.META_FILE})"
            )
        variables, meta = porting.load(path)
        expected = {"name": "efficientnet_lite", "lite_version": version}
        if meta["architecture"] != expected:
            raise WeightsMismatchError(f"{path} holds {meta['architecture']}, not {expected}")
        if data_config.normalization != meta["normalization"]:
            raise WeightsMismatchError(
                f"{path} expects data.normalization={meta['normalization']!r}; the config has "
                f"{data_config.normalization!r}"
            )
        for collection, tree in variables.items():
            part = {k: v for k, v in tree.items() if k != HEAD}
            loaded.setdefault(collection, {})[concatenated.part_name(version)] = part
    return merge_strict(fresh, loaded, init_config.checkpoint)


# --- cached features
# --------------------------------------------------------------------------------------


def uses_cached_features(config, the_plan: Plan) -> bool:
    return bool(
        the_plan.frozen_backbone
        and config.freeze.cache_features
        and not config.data.augment_enabled
    )
