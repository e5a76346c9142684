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
    d.classes = "study"  # "study" (the six), "all" (every single-genre style) or "A,B,C"
    d.image_size = 200
    d.test_fraction = 0.1  # fixed test split per style; changing it changes the test split
    d.val_fraction = 0.1  # of the rest, resampled per run from config.seed (study: ~9% of all)
    d.max_hamming = 10  # near-duplicate detection: perceptual-hash bits ...
    d.min_correlation = 0.85  # ... and thumbnail correlation
    d.normalization = "unit"  # unit | imagenet | caffe | standardize
    d.cache = True  # keep decoded, resized uint8 images in memory
    d.shuffle_buffer = 2048
    # Online minority oversampling: class c drawn with probability ∝ count_c ** power
    # (0.0: balanced, 1.0: natural). None: plain shuffling.
    d.oversample_power = ml_collections.config_dict.placeholder(float)
    d.augment_enabled = True
    # The study's ImageDataGenerator settings (shear in degrees, as Keras takes it).
    d.augment = ml_collections.ConfigDict(dict(
        rotation=40.0, width_shift=0.2, height_shift=0.2, shear=0.2, zoom=0.2,
        brightness=(0.8, 1.2), horizontal_flip=True))
    return d


def model_config() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.name = "cnn"  # cnn | resnet
    m.dtype = "float32"  # compute dtype: float32 | bfloat16 (parameters stay float32)
    m.conv_impl = "auto"  # auto (patches on CPU, xla elsewhere) | xla | patches
    m.dropout_rate = 0.4  # cnn
    m.depth = 50  # resnet: 50 | 101 | 152 ...
    m.stage_sizes = ()  # ... or explicit blocks per stage (tiny test models)
    m.variant = "v1.5"  # resnet: v1 (Keras layout) | v1.5 (torchvision layout)
    m.width = 64
    m.bn_momentum = 0.9
    return m


def optimizer_config() -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.name = "adam"  # adam | adamw | sgd | rmsprop
    o.learning_rate = 1e-3
    o.schedule = "constant"  # constant | cosine | warmup_cosine
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
    # sum(w*ce)/batch, whose scale jumps with the batch's minority count (it collapsed here: RESULTS.md).
    config.normalize_class_weights = True
    config.label_smoothing = 0.0
    config.log_every_steps = 20  # host syncs (metrics, NaN check) only at these intervals
    config.checkpoint_every_epochs = 1
    config.keep_checkpoints = 2  # latest N, plus the best by `best_metric`
    config.best_metric = "val_accuracy"
    config.prefetch_to_device = 2  # batches staged on the devices ahead of the step
    config.profile_start_step = -1  # >= 0: jax.profiler trace of `profile_steps` steps into workdir/profile
    config.profile_steps = 5
    config.data = data_config()
    config.model = model_config()
    config.optimizer = optimizer_config()
    return config


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


def flat_keys(config, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            keys += flat_keys(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def parse_flags(argv):
    """absl flag parser for the CLIs: an unknown --config.x override is an error listing valid keys."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
        path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
        if path is None and "--config" in argv:
            path = argv[argv.index("--config") + 1]
        given = [a.split("=")[0][len("--config."):] for a in argv if a.startswith("--config.")]
        valid = flat_keys(load(path)) if path else []
        unknown = [k for k in given if k not in valid]
        raise SystemExit(f"error: unknown config key(s) {unknown or given} ({e}).\n"
                         f"Valid keys: {', '.join(valid)}")
