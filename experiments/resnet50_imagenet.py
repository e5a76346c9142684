"""ResNet50 with ImageNet weights, frozen; only a new classifier head trains: the study's 87% row.

ImageNet ResNet50 weights cannot be downloaded on the development machine; bring torchvision's file
(or let the porter fetch it where there is internet):

  python -m artjax.port torchvision --weights resnet50-11ad3fa6.pth --output
  checkpoints/imagenet/resnet50_torchvision
  python -m artjax.port torchvision --fetch --output checkpoints/imagenet/resnet50_torchvision
  python -m artjax.train --config experiments/resnet50_imagenet.py --workdir
  checkpoints/resnet50_imagenet \\
      --config.data.root=../shared/data/best_artworks

Variant `keras` uses Keras's weights instead (the study's own; caffe preprocessing):
  python -m artjax.port keras --weights resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 \\
      --output checkpoints/imagenet/resnet50_keras
Other variants: `weighted` (class-weighted loss), `synthetic` (embedded synthetic set, a smoke run).
Backbone features are computed once per image (no augmentation), so the head trains in minutes.
"""

from artjax import configs


def get_config(arg: str | None = None):
    variants = configs.parse_variants(arg, ("keras", "weighted", "synthetic"))
    config = configs.base_config()
    configs.imagenet_resnet50(config, keras="keras" in variants)
    configs.imagenet_transfer(config, fine_tune=False)
    config.class_weighted = "weighted" in variants
    if "synthetic" in variants:
        configs.apply_synthetic(config)
    return config
