"""WikiArt's 27 styles, each painting labelled with its own style (artjax.data.wikiart), from any of
its three distributions (the ArtGAN release, Hugging Face's huggan/wikiart, Kaggle's Painter by
Numbers: README, "WikiArt"), with three recipes and two test splits.

Recipes (one of):
  lite0           (default) the frozen EfficientNet-Lite0 of experiments/lite0_style.py: five
                  crops, every artist drawn equally often, a head on cached features
  lite0_finetune  experiments/efficientnet_lite0_finetune.py: the last 20% of Lite0's layers
  resnet50        ResNet50 from ImageNet weights with every layer trained, the literature's
                  setting (Lecoutre et al. 2017 retrain a ResNet50 on WikiArt, 62% on 25 styles):
                  224 px, SGD with momentum at 1e-3 for the backbone, Adam for the new head
Test split (one of):
  release         (default) the download's own split, to compare with published figures: ArtGAN's
                  style_val, Painter by Numbers' test/ (Hugging Face's shards have none)
  artist          a fixed test split of whole artists (data.test_split=artist), which no published
                  split has; leave-artists-out CV folds: `python -m artjax.cv --by artist`
Options: `era` (Painter by Numbers: an era head on each painting's own date; the frozen recipe).

  python -m artjax.port efficientnet_lite --output checkpoints/imagenet/efficientnet_lite0
  python -m artjax.prepare --config experiments/wikiart.py --config.data.root=DIR
  python -m artjax.train --config experiments/wikiart.py:lite0,release \\
      --workdir checkpoints/wikiart_lite0_release --config.data.root=DIR
  python -m artjax.evaluate --workdir checkpoints/wikiart_lite0_release --split test
"""

from artjax import configs

RECIPES = ("lite0", "lite0_finetune", "resnet50")
SPLITS = ("release", "artist")
VARIANTS = (*RECIPES, *SPLITS, "era")


def _one_of(variants: set, choices, default: str) -> str:
    chosen = variants & set(choices)
    if len(chosen) > 1:
        raise ValueError(f"experiments/wikiart.py: choose one of {choices}, not {sorted(chosen)}")
    return next(iter(chosen), default)


def get_config(arg: str | None = None):
    variants = configs.parse_variants(arg, VARIANTS)
    recipe = _one_of(variants, RECIPES, "lite0")
    config = configs.base_config()
    if recipe == "resnet50":
        configs.imagenet_resnet50(config, keras=False)
        configs.imagenet_transfer(config, fine_tune=True, backbone_learning_rate=1e-3)
        config.freeze.trainable = "all"
    else:
        configs.imagenet_lite0(config)
        configs.imagenet_transfer(
            config, fine_tune=recipe == "lite0_finetune", backbone_learning_rate=3e-3
        )
    if recipe == "lite0":  # experiments/lite0_style.py's choices
        config.data.artist_balanced = True
        config.data.views = "crops"
        config.data.crop_fraction = 0.5
    if recipe == "lite0_finetune":
        config.backbone_optimizer.nesterov = True
    if "era" in variants:
        if recipe != "lite0":
            raise ValueError("experiments/wikiart.py: `era` is for the frozen recipe (lite0)")
        config.model.era_head = True
        config.model.era_bins = 32  # 25-year bins from 1200
        config.era.loss = "bins"
    config.data.classes = "wikiart"
    config.data.min_class_images = 0
    config.data.test_split = _one_of(variants, SPLITS, "release")
    # 80,000 paintings: the decoded images do not fit in memory (frozen: features cached anyway)
    config.data.cache = False
    return config
