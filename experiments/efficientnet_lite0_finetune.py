"""EfficientNet-Lite0 from ImageNet weights, fine-tuned: the last 20% of its layers train (the
study's recipe for ResNet50), with SGD at a lower learning rate; the new head trains with Adam.

  python -m artjax.port efficientnet_lite --output checkpoints/imagenet/efficientnet_lite0
  python -m artjax.train --config experiments/efficientnet_lite0_finetune.py \\
      --workdir checkpoints/lite0_finetune --config.data.root=../shared/data/best_artworks
  python -m artjax.evaluate --workdir checkpoints/lite0_finetune --split test

BatchNorm statistics stay fixed (inference mode) everywhere: batches of 32 are too small to
re-estimate them well; the trainable layers' BatchNorm scales and offsets still learn. Training sees
the study's augmentation. `--config.init.checkpoint=checkpoints/lite0_imagenet` starts from the
frozen run's best checkpoint (its head included) instead. Variants: `weighted`, `synthetic`.
"""

from artjax import configs


def get_config(arg: str | None = None):
    variants = configs.parse_variants(arg, ("weighted", "synthetic"))
    config = configs.base_config()
    configs.imagenet_lite0(config)
    configs.imagenet_transfer(config, fine_tune=True, backbone_learning_rate=3e-3)
    config.backbone_optimizer.nesterov = True
    config.class_weighted = "weighted" in variants
    if "synthetic" in variants:
        configs.apply_synthetic(config)
    return config
