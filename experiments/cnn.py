"""The study's small CNN (Chollet's convnet) on the six styles, Adam, Keras-style augmentation.

  python -m artjax.train --config experiments/cnn.py --workdir checkpoints/cnn \\
      --config.data.root=../shared/data/best_artworks
  python -m artjax.evaluate --workdir checkpoints/cnn --split test

Variants (comma-separated): `weighted` (class-weighted loss, the study's "CNN weighted" row),
`synthetic` (the embedded synthetic set at 64x64, 15 epochs: about a minute on 2 CPU cores).
Expected runtime on the real paintings: see RESULTS.md for measured times.
"""

from artjax import configs


def get_config(arg: str | None = None):
    variants = configs.parse_variants(arg, ("weighted", "synthetic"))
    config = configs.base_config()
    config.model.name = "cnn"
    config.num_epochs = 20
    config.optimizer.name = "adam"  # the study's
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_epochs = 1.0
    config.class_weighted = "weighted" in variants
    if "synthetic" in variants:
        configs.apply_synthetic(config)
    return config
