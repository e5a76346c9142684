"""Cross-validation of an experiment:

  python -m artjax.cv --config experiments/<exp>.py[:variant] --workdir checkpoints/<cv> \
      --folds K --by artist|image

`--by artist`: folds of held-out artists (`--folds 0`: one artist per fold); `--by image`: K folds
of the non-test images. Running it again resumes; `artjax.evaluate --workdir checkpoints/<cv>`
scores the bag of the fold models on the fixed test split. What it writes: `artjax.crossval`.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX start threads (see artjax.host_memory)
    from artjax import host_memory

    host_memory.keep_freed_memory()

import pathlib

from absl import app, flags
from ml_collections import config_flags

from artjax import cli, configs, crossval


def main(argv):
    args = cli.start(argv)
    with cli.reported_errors():
        report = crossval.run_cv(args.config, args.workdir, args.folds, args.by)
    print(crossval.report_markdown(report))
    print(f"report in {pathlib.Path(args.workdir) / 'cv_report.md'} and cv_report.json")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Experiment config (experiments/*.py).")
    flags.DEFINE_string("workdir", None, "CV directory: one training workdir per fold, the report.")
    flags.DEFINE_integer("folds", 5, "Number of folds (--by artist: 0 = one artist per fold).")
    flags.DEFINE_enum("by", "artist", list(crossval.HELDOUT), "Hold out whole artists or images.")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=configs.parse_flags)
