"""Cross-validation of an experiment:

  python -m artjax.cv --config experiments/<exp>.py[:variant] --workdir checkpoints/<cv> \
      --folds K --by artist|image

`--by artist`: folds of held-out artists (`--folds 0`: one artist per fold); `--by image`: K folds
of the non-test images. Running it again resumes; `artjax.evaluate --workdir checkpoints/<cv>`
scores the bag of the fold models on the fixed test split. `--report_only` rewrites the report of
a finished CV from its folds' stored held-out predictions (no --config, nothing trained).

  python -m artjax.cv --workdir checkpoints/<bag> --bag_of checkpoints/<cv1>,checkpoints/<cv2>

bags finished CVs of one class set and folds (e.g. two recipes): the report of their mean held-out
probabilities, and a workdir that evaluates and predicts with all their fold models. What it
writes: `artjax.crossval`.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX are imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

import pathlib

from absl import app, flags
from ml_collections import config_flags

from artjax import cli, configs, crossval


def main(argv):
    args = cli.start(argv)
    if not (args.report_only or args.bag_of) and args.config is None:
        raise app.UsageError("--config is required (except with --report_only or --bag_of)")
    if len(args.bag_of) == 1:
        raise app.UsageError("--bag_of takes two or more CV workdirs")
    with cli.reported_errors():
        if args.bag_of:
            report = crossval.bag_cvs(args.workdir, args.bag_of)
        elif args.report_only:
            report = crossval.write_report(args.workdir)
        else:
            report = crossval.run_cv(args.config, args.workdir, args.folds, args.by)
    print(crossval.report_markdown(report))
    print(f"report in {pathlib.Path(args.workdir) / 'cv_report.md'} and cv_report.json")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Experiment config (experiments/*.py).")
    flags.DEFINE_string("workdir", None, "CV directory: one training workdir per fold, the report.")
    flags.DEFINE_integer("folds", 5, "Number of folds (--by artist: 0 = one artist per fold).")
    flags.DEFINE_enum("by", "artist", list(crossval.HELDOUT), "Hold out whole artists or images.")
    flags.DEFINE_bool("report_only", False, "Only rewrite the report of a finished CV.")
    flags.DEFINE_list("bag_of", [], "Finished CV workdirs to bag (same folds) into --workdir.")
    flags.mark_flags_as_required(["workdir"])
    app.run(main, flags_parser=configs.parse_flags)
