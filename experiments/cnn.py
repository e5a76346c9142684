"""The study's small CNN on the six styles.

  python -m artjax.eda --config experiments/cnn.py --config.data.root=../shared/data/best_artworks
Variants: `experiments/cnn.py:synthetic` uses the embedded synthetic set at 64x64 (seconds on a CPU).
"""

from artjax import configs


def get_config(arg: str | None = None):
    config = configs.base_config()
    if arg == "synthetic":
        config.data.image_size = 64
    elif arg:
        raise ValueError(f"unknown variant {arg!r}; valid: 'synthetic'")
    return config
