"""EfficientNet-Lite0 whose backbone learns style (issue 34): the recipe of
`experiments/lite0_style.py` (artist-balanced draws, five crops at half the sides averaged at
prediction, the era head over 25-year bins), with a trainable share of the backbone, trained on
random crops instead of cached fixed views.

  python -m artjax.port efficientnet_lite --output checkpoints/imagenet/efficientnet_lite0
  python -m artjax.train --config experiments/style.py:six,last20 --workdir checkpoints/style_six \\
      --config.data.root=../shared/data/best_artworks
  python -m artjax.evaluate --workdir checkpoints/style_six --split test
  python -m artjax.cv --config experiments/style.py:all,last20 --workdir checkpoints/cv_style \\
      --folds 5 --by artist --config.data.root=../shared/data/best_artworks

Variants (comma-separated, one of each group):
- class set: `all` (default), `genres`, `six` (the study's six styles);
- trainable share (`transfer.DEPTHS`): `head` (the frozen backbone of lite0_style.py, but on random
  crops), `top_conv` (Lite0's last 1x1 convolution), `last20` (default), `last50` (the last 20% /
  50% of the layers with parameters), `whole`;
- the optimizer of the head (`optimizer`) and of the trainable backbone layers
  (`backbone_optimizer`, ten times slower), both warm-up then cosine: `adam` (default: 1e-3 and
  1e-4), `sgd` (momentum 0.9, Nesterov: 1e-2 and 1e-3), `rmsprop` (1e-3 and 1e-4);
- `noera` (no era head), `era3` (the era loss at three times its weight);
- `bn_trainable`: the trainable layers' BatchNorm statistics update (default: frozen, ImageNet's
  statistics everywhere; only the trainable layers' BatchNorm scales and offsets learn);
- `photos`: training images also pass through the gallery-photo simulator
  (`data.photometric_augment`, its parameters in the `photos` section);
- `partial`: multi-genre artists (Gauguin, Kahlo, Klimt, Titian) train too, on the total
  probability of their listed styles (`data.partial_labels`); folds and scoring are unchanged;
- `synthetic`: the embedded set at 64 px, a smoke run.

Training views: a crop of 40-60% of the painting's sides anywhere inside it, mirrored half the
time (`data.train_views=random_crops`, `data.random_crop`), every artist of a style drawn equally
often; evaluation and prediction average the logits of the four corners and the centre at half
the sides (`data.views=crops`), as lite0_style.py does. The default depth `last20` scored best
of the trainable shares measured on the 3-fold leave-artists-out CV of `all` on a CPU
(`top_conv`, `last20`), but no better than the frozen recipe of lite0_style.py, which stays the
project's recipe (RESULTS.md, "Fine-tuning depth").
The runs a GPU should make are in experiments/run_study_on_gpu.sh (ONLY=finetune_depth).
"""

from artjax import configs, transfer

SETS = {"all": "all", "genres": "genres", "six": "study"}
# optimizer variant -> (the head's learning rate, the backbone's, the fields both share): one
# optimizer for the new head and the trainable backbone, the backbone ten times slower
OPTIMIZERS = {
    "adam": (1e-3, 1e-4, {}),
    "sgd": (1e-2, 1e-3, dict(momentum=0.9, nesterov=True)),
    "rmsprop": (1e-3, 1e-4, dict(momentum=0.0, rmsprop_decay=0.9)),
}
VARIANTS = (
    *SETS,
    *transfer.DEPTHS,
    *OPTIMIZERS,
    "noera",
    "era3",
    "bn_trainable",
    "photos",
    "partial",
    "synthetic",
)


def _one_of(variants: set[str], group, default: str) -> str:
    chosen = variants & set(group)
    if len(chosen) > 1:
        raise ValueError(f"experiments/style.py: choose one of {sorted(group)}, not {chosen}")
    return next(iter(chosen), default)


def get_config(arg: str | None = None):
    variants = configs.parse_variants(arg, VARIANTS)
    config = configs.base_config()
    configs.imagenet_lite0(config)
    configs.imagenet_transfer(config, fine_tune=True)
    config.data.classes = SETS[_one_of(variants, SETS, "all")]
    transfer.apply_depth(config, _one_of(variants, transfer.DEPTHS, "last20"))
    name = _one_of(variants, OPTIMIZERS, "adam")
    head_rate, backbone_rate, shared = OPTIMIZERS[name]
    for opt, rate in ((config.optimizer, head_rate), (config.backbone_optimizer, backbone_rate)):
        opt.name, opt.learning_rate = name, rate
        opt.schedule, opt.warmup_epochs = "warmup_cosine", 1.0
        opt.update(shared)
    config.data.artist_balanced = True
    config.data.augment_enabled = True
    config.data.train_views = "random_crops"
    config.data.views = "crops"
    config.data.crop_fraction = 0.5
    config.data.photometric_augment = "photos" in variants
    config.data.partial_labels = "partial" in variants
    config.freeze.batch_norm = "trainable" if "bn_trainable" in variants else "frozen"
    config.model.era_head = "noera" not in variants
    config.model.era_bins = 32  # 25-year bins from 1200 (model.era_bin_start, era_bin_years)
    config.era.loss = "bins"
    config.era.loss_weight = 3.0 if "era3" in variants else 1.0
    config.num_epochs = 12
    if "synthetic" in variants:
        configs.apply_synthetic(config)
        config.data.random_crop.source_size = 128
    return config
