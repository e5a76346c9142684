"""Training: `python -m artjax.train --config experiments/<exp>.py[:variant] --workdir
checkpoints/<run>`.

Resumes from the latest checkpoint in --workdir. The loop and what it writes: `artjax.trainer`.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX are imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

from absl import app, flags
from ml_collections import config_flags

from artjax import cli, configs, trainer


def main(argv):
    cli.start(argv, distributed=flags.FLAGS.distributed)
    with cli.reported_errors():
        trainer.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Experiment config (experiments/*.py).")
    flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, reports.")
    cli.define_distributed_flags()
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main, flags_parser=configs.parse_flags)
