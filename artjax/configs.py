"""Shared defaults for `experiments/*.py`; each experiment overrides what differs.

Every hyperparameter of a run lives in its ConfigDict: nothing is hidden in step functions.
"""

from __future__ import annotations

import ml_collections


def data_config() -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    # Kaggle download (folder with artists.csv and images/ or resized/). Empty: the embedded
    # synthetic set, generated into `synthetic_dir` on first use.
    d.root = ""
    d.synthetic_dir = "data/synthetic"
    d.prepared_dir = "data/prepared"  # TFDS records, one copy per download and split setting
    # "study" (the six), "all" (every single-genre style), "genres" (multi-label: every genre an
    # artist with images lists, multi-genre artists included) or "A,B,C"
    d.classes = "study"
    d.min_class_images = 0  # "all", "genres": classes with fewer images are left out
    # Single-label class sets ("all", "study", a list): the paintings of multi-genre artists who
    # list one or more of the classes train too, with those classes as a partial label (the loss
    # is -log of their total probability: steps.MULTI_LABEL_LOSSES["partial"]). They are never in
    # validation, test or a CV's held-out artists. Frozen backbones (cached features) only.
    d.partial_labels = False
    # Validation drawn from the training pool by "image" (seeded, stratified, whole duplicate
    # groups) or by "artist" (whole artists: one per class that has two or more).
    d.split_by = "image"
    # One cross-validation fold (artjax.cv sets these): by "" (none), "image" (K folds of the
    # non-test images; the fold is the validation split) or "artist" (folds of held-out artists,
    # all their images are the fold's test split; folds = 0: one artist per fold).
    d.cv = ml_collections.ConfigDict(dict(by="", folds=5, fold=0))
    d.image_size = 200
    d.test_fraction = 0.1  # fixed test split per style; changing it changes the test split
    d.val_fraction = 0.1  # of the rest, resampled per run from config.seed (study: ~9% of all)
    d.max_hamming = 10  # near-duplicate detection: perceptual-hash bits ...
    d.min_correlation = 0.85  # ... and thumbnail correlation
    d.normalization = "unit"  # data.preprocess.NORMALIZATIONS (ported weights fix it)
    d.cache = True  # keep decoded, resized uint8 images in memory
    d.shuffle_buffer = 2048
    # Online minority oversampling: class c drawn with probability ∝ count_c ** power
    # (0.0: balanced, 1.0: natural). None: plain shuffling.
    d.oversample_power = ml_collections.config_dict.placeholder(float)
    # Within each class, every artist is drawn equally often (not in proportion to their image
    # count), so one prolific painter does not define a style. Class shares stay as above.
    d.artist_balanced = False
    d.augment_enabled = True
    # Views of a painting for evaluation (logits averaged) and for a frozen backbone's cached
    # features (the head trains on every view): data.preprocess.VIEWS.
    d.views = "whole"
    d.crop_fraction = 0.875  # crops: 224 px of a 256 px painting, at about its full scale
    # The study's ImageDataGenerator settings (shear in degrees, as Keras takes it).
    d.augment = ml_collections.ConfigDict(
        dict(
            rotation=40.0,
            width_shift=0.2,
            height_shift=0.2,
            shear=0.2,
            zoom=0.2,
            brightness=(0.8, 1.2),
            horizontal_flip=True,
        )
    )
    return d


def model_config() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.name = "cnn"  # models.MODELS
    m.dtype = "float32"  # compute dtype, models.DTYPES (parameters stay float32)
    m.conv_impl = "auto"  # models.CONV_IMPLS: the CPU kernels on CPU, XLA's ops elsewhere
    m.dropout_rate = 0.4  # before the classifier (cnn: before its dense layers)
    m.depth = 50  # resnet: models.resnet.DEPTHS ...
    m.stage_sizes = ()  # ... or explicit blocks per stage (tiny test models)
    m.variant = "v1.5"  # resnet: v1 (Keras layout) | v1.5 (torchvision layout)
    m.width = 64
    m.lite_version = 0  # efficientnet_lite: models.efficientnet_lite.VERSIONS
    # efficientnet_lite_concat: the backbones side by side (init.checkpoint: one ported
    # checkpoint per version, comma-separated, in this order)
    m.lite_versions = (0, 1)
    # efficientnet_lite: stochastic depth of the last block (linear in depth)
    m.drop_connect_rate = 0.2
    # resnet, efficientnet_lite: stage outputs ("stage4", ...) whose global averages join the last
    # features as the head's input (mid-level texture statistics carry style).
    m.pooled_stages = ()
    # ... and stage outputs whose channel Gram matrices (upper triangle, signed square root) join
    # them: style statistics (Gatys et al.). C channels give C(C+1)/2 features.
    m.gram_stages = ()
    # resnet, efficientnet_lite: an era head beside the classifier, trained on each painting's
    # artist's active period (artjax.era; the `era` section). Frozen backbones (cached features).
    m.era_head = False
    # The era head as a regression (0) or over this many bins of era_bin_years from
    # era_bin_start (its estimate: the bins' expected centre; era.loss "bins").
    m.era_bins = 0
    m.era_bin_start = 1200.0
    m.era_bin_years = 25.0
    # The era as a second opinion on the style (needs the era head): at prediction each style's
    # logit loses this much per century between the era estimate and the style's place in time
    # (`style_years`: the median middle of its training artists' active periods, filled in by
    # training from its own artists: data.catalog.style_years). Training's losses see the heads'
    # own outputs. 0: off.
    m.era_style_weight = 0.0
    m.style_years = ()
    # resnet, efficientnet_lite: a hidden layer of this many units (ReLU) between the pooled
    # features and the heads, shared by the classifier and the era head. 0: none (linear heads).
    m.head_hidden = 0
    m.bn_momentum = 0.9  # Flax convention (torch momentum 0.1 == 0.9 here; TF's EfficientNet: 0.99)
    return m


def optimizer_config() -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.name = "adam"  # optim.OPTIMIZERS
    o.learning_rate = 1e-3
    o.schedule = "constant"  # optim.SCHEDULES
    o.warmup_epochs = 0.0
    o.b1, o.b2, o.eps = 0.9, 0.999, 1e-7  # Keras's Adam defaults
    o.momentum = 0.9  # sgd, rmsprop
    o.nesterov = False
    o.rmsprop_decay = 0.9
    o.weight_decay = 0.0  # kernels only; decoupled for adamw, L2 otherwise
    o.grad_clip_norm = 0.0  # 0: off
    return o


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 32  # global, over all devices and processes
    config.eval_batch_size = 64
    config.num_epochs = 30
    config.class_weighted = False  # sklearn "balanced" weights from the training split
    # True: weighted mean sum(w*ce)/sum(w) over the global batch. False: Keras's class_weight,
    # sum(w*ce)/batch, whose scale jumps with the batch's minority count (it collapsed here:
    # RESULTS.md).
    config.normalize_class_weights = True
    config.label_smoothing = 0.0
    # Single-label classes: the share of each target moved to the class's neighbours in time (the
    # styles before and after it, ordered by their artists' years: data.catalog.time_neighbours),
    # before label_smoothing spreads its share over every class. 0: off.
    config.time_smoothing = 0.0
    # CORAL with artists as domains (steps.coral_loss): the weight of the gap between each
    # artist's covariance of the head's outputs and its class's, within the batch. Frozen
    # backbones (cached features). 0: off.
    config.coral_weight = 0.0
    # mixup (Zhang et al.): each training input, image or cached features, is mixed with another
    # of its device's share at a weight drawn from Beta(mixup_alpha, mixup_alpha), and so is its
    # loss. 0: off.
    config.mixup_alpha = 0.0
    # Multi-label class sets: "sigmoid" (binary cross-entropy per class) or "softmax" (softmax
    # cross-entropy against the listed genres as a uniform soft target); steps.MULTI_LABEL_LOSSES
    config.multi_label_loss = "sigmoid"
    config.log_every_steps = 20  # host syncs (metrics, NaN check) only at these intervals
    config.checkpoint_every_epochs = 1
    config.keep_checkpoints = 2  # latest N, plus the best by `best_metric`
    config.best_metric = "val_accuracy"
    config.prefetch_to_device = 2  # batches staged on the devices ahead of the step
    # >= 0: jax.profiler trace of `profile_steps` steps into workdir/profile
    config.profile_start_step = -1
    config.profile_steps = 5
    config.data = data_config()
    config.model = model_config()
    # The era head's loss (steps.ERA_LOSSES: "interval", 0 inside the artist's active period,
    # "midpoint", or "bins": cross-entropy against the bins the period overlaps, in proportion),
    # its weight beside the style loss, and the span of the period it prints.
    config.era = ml_collections.ConfigDict(dict(loss="interval", loss_weight=1.0, span_years=30))
    config.optimizer = optimizer_config()
    # Trainable backbone layers when fine-tuning (name "": the same optimizer as everything else).
    config.backbone_optimizer = optimizer_config()
    config.backbone_optimizer.name = ""
    config.init = init_config()
    config.freeze = freeze_config()
    # After training: temperature scaling fitted on the validation split (artjax.calibration),
    # and the "uncertain" threshold: the lowest top probability at which validation predictions
    # are right at least `confident_accuracy` of the time.
    # from_cv: a leave-artists-out CV workdir of this recipe; its temperature, fitted on artists
    # held out of training, replaces the one fitted on validation (which holds seen artists only).
    config.calibration = ml_collections.ConfigDict(
        dict(enabled=True, confident_accuracy=0.8, from_cv="")
    )
    return config


def init_config() -> ml_collections.ConfigDict:
    i = ml_collections.ConfigDict()
    # Ported ImageNet weights (`python -m artjax.port ...`; head replaced) or a training workdir
    # (head kept; same classes). Empty: random initialization.
    i.checkpoint = ""
    i.workdir_checkpoint = "best"  # which step of a training workdir: best | latest | STEP
    return i


def freeze_config() -> ml_collections.ConfigDict:
    f = ml_collections.ConfigDict()
    f.trainable = "all"  # transfer.TRAINABLE
    f.fraction = 0.2  # last_fraction: share of the layers with parameters, counted from the top
    f.modules = ""  # modules: e.g. "stage4,head" or "block16,top_conv"
    f.batch_norm = "trainable"  # transfer.BATCH_NORM: "trainable" layers' BN updates its statistics
    # head-only training without augmentation: backbone features computed once
    f.cache_features = True
    # A directory where frozen-backbone runs share one computation of every image's features
    # (artjax.cv sets it for its folds); "": each run computes its own.
    f.feature_cache = ""
    return f


# --- building blocks of the ImageNet experiments
# -------------------------------------------------------


def imagenet_transfer(config, *, fine_tune: bool, backbone_learning_rate: float = 1e-3) -> None:
    """What the ImageNet experiments share: 224px, BatchNorm statistics fixed, Adam for the new
    head, label smoothing 0.1. Frozen: only the head trains, on backbone features computed once (no
    augmentation), 30 epochs. Fine-tuned: the study's recipe, the last 20% of the layers train with
    SGD at `backbone_learning_rate`, with the study's augmentation, 12 epochs."""
    config.data.image_size = 224
    config.freeze.batch_norm = "frozen"
    config.batch_size = 32
    config.eval_batch_size = 64
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 1.0
    config.label_smoothing = 0.1
    if not fine_tune:
        config.data.augment_enabled = False
        config.freeze.trainable = "head"
        config.optimizer.weight_decay = 1e-4
        config.num_epochs = 30
        return
    config.freeze.trainable = "last_fraction"
    config.freeze.fraction = 0.2
    config.num_epochs = 12
    b = config.backbone_optimizer
    b.name, b.learning_rate, b.momentum = "sgd", backbone_learning_rate, 0.9
    b.schedule, b.warmup_epochs = "warmup_cosine", 1.0


def imagenet_resnet50(config, *, keras: bool) -> None:
    """ResNet50 from torchvision's weights (v1.5, ImageNet mean/std) or Keras's (v1, caffe)."""
    config.model.name = "resnet"
    config.model.depth = 50
    config.model.dropout_rate = 0.2
    config.model.variant = "v1" if keras else "v1.5"
    config.data.normalization = "caffe" if keras else "imagenet"
    config.init.checkpoint = f"checkpoints/imagenet/resnet50_{'keras' if keras else 'torchvision'}"


def imagenet_lite0(config) -> None:
    """EfficientNet-Lite0 from its real ImageNet weights (TF's settings: BN momentum 0.99, dropout
    0.2)."""
    config.model.name = "efficientnet_lite"
    config.model.lite_version = 0
    config.model.bn_momentum = 0.99
    config.model.dropout_rate = 0.2
    config.model.drop_connect_rate = 0.2
    # The head also sees the global averages of stages 4-7 (mid-level texture statistics): on the
    # validation split 0.95-0.96 against 0.91 with the last features alone (RESULTS.md).
    config.model.pooled_stages = ("stage4", "stage5", "stage6", "stage7")
    config.data.normalization = "lite"  # what the ported weights expect (port.json)
    config.init.checkpoint = "checkpoints/imagenet/efficientnet_lite0"


def parse_variants(arg: str | None, valid) -> set[str]:
    """'a,b' -> {'a', 'b'}; an unknown variant is an error listing the valid ones."""
    variants = {v.strip() for v in (arg or "").split(",") if v.strip()}
    unknown = variants - set(valid)
    if unknown:
        raise ValueError(f"unknown variant(s) {sorted(unknown)}; valid: {sorted(valid)}")
    return variants


def apply_synthetic(config) -> None:
    """The embedded-default variant: small images and a short run, minutes on a CPU."""
    config.data.root = ""
    config.data.image_size = 64
    config.num_epochs = 15
    config.log_every_steps = 3


def load(path_and_variant: str) -> ml_collections.ConfigDict:
    """Loads `experiments/x.py[:variant]` the way --config does."""
    import importlib.util

    path, _, variant = path_and_variant.partition(":")
    spec = importlib.util.spec_from_file_location("artjax_experiment_config", path)
    if spec is None or not path.endswith(".py"):
        raise FileNotFoundError(f"{path}: not a config file (experiments/*.py)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant or None)


def from_record(stored: dict) -> ml_collections.ConfigDict:
    """A run record's config, with today's defaults for keys added since it was written."""

    def merge(defaults, values):
        out = dict(defaults)
        for k, v in values.items():
            out[k] = (
                merge(defaults[k], v)
                if isinstance(v, dict) and isinstance(defaults.get(k), dict)
                else v
            )
        return out

    return ml_collections.ConfigDict(merge(base_config().to_dict(), stored))


def flat_keys(config, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            keys += flat_keys(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def parse_flags(argv):
    """absl flag parser for the CLIs: an unknown --config.x override is an error listing valid
    keys."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
        path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
        if path is None and "--config" in argv:
            path = argv[argv.index("--config") + 1]
        given = [a.split("=")[0][len("--config.") :] for a in argv if a.startswith("--config.")]
        valid = flat_keys(load(path)) if path else []
        unknown = [k for k in given if k not in valid]
        raise SystemExit(
            f"error: unknown config key(s) {unknown or given} ({e}).\n"
            f"Valid keys: {', '.join(valid)}"
        ) from None
