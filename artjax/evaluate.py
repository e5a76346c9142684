"""Evaluation from a workdir alone: `python -m artjax.evaluate --workdir checkpoints/<run>
[--split test|val] [--checkpoint best|latest|STEP]`. What it writes: `artjax.evaluation`."""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX start threads (see artjax.host_memory)
    from artjax import host_memory

    host_memory.keep_freed_memory()

import pathlib

from absl import app, flags

from artjax import cli, evaluation
from artjax.data import input_pipeline as ip
from artjax.data import synthetic


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.setup_process()
    args = flags.FLAGS
    report = evaluation.evaluate(args.workdir, args.split, args.checkpoint)
    if report["synthetic"]:
        print(synthetic.BANNER)
    print(
        f"{report['split']} split, step {report['step']} ({report['checkpoint']}), "
        f"{report['images']} images"
    )
    print(
        f"accuracy {report['accuracy']:.4f}  balanced accuracy {report['balanced_accuracy']:.4f}  "
        f"macro F1 {report['macro']['f1']:.4f}  weighted F1 {report['weighted']['f1']:.4f}"
    )
    for c, m in report["per_class"].items():
        print(
            f"  {c:<24} precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
            f"f1 {m['f1']:.3f}  support {m['support']}"
        )
    print(f"artifacts in {pathlib.Path(args.workdir) / ('eval_' + report['split'])}")


if __name__ == "__main__":
    cli.define_checkpoint_flags()
    flags.DEFINE_enum("split", "test", list(ip.SPLITS), "Split to evaluate.")
    app.run(main)
