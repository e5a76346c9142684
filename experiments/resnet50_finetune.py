"""ResNet50 from ImageNet weights, fine-tuned as in the study: the last 20% of its layers (most of
stage 4) train with SGD at a low learning rate, the new head with Adam; the study reached 88%.

  python -m artjax.port torchvision --weights resnet50-11ad3fa6.pth --output
  checkpoints/imagenet/resnet50_torchvision
  python -m artjax.train --config experiments/resnet50_finetune.py --workdir
  checkpoints/resnet50_finetune \\
      --config.data.root=../shared/data/best_artworks

BatchNorm statistics stay fixed (inference mode) everywhere; trainable layers' BatchNorm scales and
offsets learn. `--config.init.checkpoint=checkpoints/resnet50_imagenet` starts from the frozen run
(head included). Variants: `keras` (Keras's weights, caffe preprocessing), `weighted`, `synthetic`.
ResNet50 forward passes at 224px run at a few images/s on 2 CPU cores: use an accelerator.
"""

from artjax import configs


def get_config(arg: str | None = None):
    variants = configs.parse_variants(arg, ("keras", "weighted", "synthetic"))
    config = configs.base_config()
    configs.imagenet_resnet50(config, keras="keras" in variants)
    # the study's SGD
    configs.imagenet_transfer(config, fine_tune=True, backbone_learning_rate=1e-3)
    config.class_weighted = "weighted" in variants
    if "synthetic" in variants:
        configs.apply_synthetic(config)
    return config
