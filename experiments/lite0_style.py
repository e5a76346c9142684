"""EfficientNet-Lite0, frozen, tuned for painters it never saw: the recipe the leave-artists-out CV
chose (RESULTS.md, "Across artists"), for every single-genre style (`all`, default), every listed
genre (`genres`, multi-label) or the study's six styles (`six`).

  python -m artjax.port efficientnet_lite --output checkpoints/imagenet/efficientnet_lite0
  python -m artjax.cv --config experiments/lite0_style.py:all --workdir checkpoints/cv_style_all \\
      --folds 5 --by artist --config.data.root=../shared/data/best_artworks
  python -m artjax.train --config experiments/lite0_style.py:six --workdir checkpoints/style_six \\
      --config.data.root=../shared/data/best_artworks
  python -m artjax.predict --workdir checkpoints/style_six painting.jpg

What it changes from experiments/efficientnet_lite0_imagenet.py, each chosen on the CV:
- validation holds whole artists (`data.split_by=artist`), so the temperature and the "uncertain"
  threshold are fitted on painters the model did not train on.
"""

from artjax import configs

VARIANTS = ("all", "genres", "six", "synthetic")


def get_config(arg: str | None = None):
    variants = configs.parse_variants(arg, VARIANTS)
    sets = variants & {"all", "genres", "six"}
    if len(sets) > 1:
        raise ValueError(f"experiments/lite0_style.py: choose one of all, genres, six, not {sets}")
    config = configs.base_config()
    configs.imagenet_lite0(config)
    configs.imagenet_transfer(config, fine_tune=False)
    config.data.classes = {"genres": "genres", "six": "study"}.get(next(iter(sets), ""), "all")
    config.data.split_by = "artist"
    if "synthetic" in variants:
        configs.apply_synthetic(config)
    return config
