"""Exploratory figures of the study: class distribution, pixel-intensity histograms per class, a
sample grid per class and a grid of augmented examples; prints counts per style and artist.

  python -m artjax.eda --config experiments/cnn.py [--config.data.root=...] [--outdir
  checkpoints/eda]
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX are imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

import pathlib

from absl import app, flags, logging
from ml_collections import config_flags

from artjax import cli, configs
from artjax.data import exploration, synthetic
from artjax.data import input_pipeline as ip


def main(argv):
    del argv
    cli.setup_process()
    F = flags.FLAGS
    summary = exploration.write_figures(F.config, pathlib.Path(F.outdir), F.samples_per_class)
    if summary["synthetic"]:
        logging.warning(synthetic.BANNER)
    print(f"{'style':<24}{'train':>7}{'val':>6}{'test':>6}{'total':>7}")
    for i, name in enumerate(summary["classes"]):
        row = [summary["counts"][s][i] for s in ip.SPLITS]
        print(f"{name:<24}{row[0]:>7}{row[1]:>6}{row[2]:>6}{sum(row):>7}")
    print(f"\n{'style':<24}{'artist':<40}{'images':>7}")
    for (style, artist), n in summary["artists"].items():
        print(f"{style:<24}{artist:<40}{n:>7}")
    print(
        "\nduplicate groups (near-identical scans kept in one split): "
        f"{summary['duplicate_groups']}"
    )
    print(f"figures in {F.outdir}")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Experiment config (experiments/*.py).")
    flags.DEFINE_string("outdir", "checkpoints/eda", "Where the figures go.")
    flags.DEFINE_integer("samples_per_class", 6, "Images per class in the sample grids.")
    flags.mark_flags_as_required(["config"])
    app.run(main, flags_parser=configs.parse_flags)
