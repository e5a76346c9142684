"""ResNet50 (torchvision v1.5 layout) trained from scratch: the study's 53% row (weighted: 12%).

  python -m artjax.train --config experiments/resnet50_scratch.py --workdir
  checkpoints/resnet50_scratch \\
      --config.data.root=../shared/data/best_artworks

Variants: `weighted` (class-weighted loss), `synthetic` (embedded synthetic set, tiny run).
ResNet50 at 200x200 trains at a few images/s on a 2-core CPU: run it on an accelerator.
"""

from artjax import configs


def get_config(arg: str | None = None):
    variants = configs.parse_variants(arg, ("weighted", "synthetic"))
    config = configs.base_config()
    config.model.name = "resnet"
    config.model.depth = 50
    config.model.variant = "v1.5"
    config.model.dropout_rate = 0.0
    config.batch_size = 16  # the study's
    config.eval_batch_size = 32
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 2.0
    config.optimizer.weight_decay = 1e-4
    config.class_weighted = "weighted" in variants
    if "synthetic" in variants:
        configs.apply_synthetic(config)
    return config
