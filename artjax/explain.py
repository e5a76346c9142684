"""Heatmaps of what a trained model looks at, for each image's top-k styles:

  python -m artjax.explain --workdir checkpoints/<run> [--checkpoint best] \
      [--method gradcam|integrated_gradients] [--top_k 3] [--out DIR] IMAGE...

One PNG per image, `<image stem>_<method>.png`, beside the image (or in --out): the painting as the
model sees it, then a heatmap per style titled with its probability. A CV workdir explains with its
fold models (maps averaged). Methods: `artjax.serving.attribution`.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX are imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

import pathlib

from absl import app, flags

from artjax import cli, figures
from artjax.data import synthetic
from artjax.serving import attribution


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("give one or more image files")
    cli.setup_process()
    args = flags.FLAGS
    with cli.reported_errors():
        explainer = attribution.Explainer(
            args.workdir,
            args.checkpoint,
            method=args.method,
            steps=args.steps,
            baseline=args.baseline,
            batch_size=args.batch_size,
        )
        explanations, errors = explainer.explain_files(argv[1:], args.top_k)
    suffix = f" [{synthetic.BANNER}]" if explainer.predictor.synthetic else ""
    for found in explanations:
        source = pathlib.Path(found.path)
        out = pathlib.Path(args.out) if args.out else source.parent
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{source.stem}_{args.method}.png"
        figures.explanation(
            target, found.image, found.ranked, found.maps, args.method, source.name, suffix
        )
        styles = ", ".join(f"{style} {p:.3f}" for style, p in found.ranked)
        print(f"{found.path}: {styles} -> {target}")
    for error in errors:
        print(f"error: {error}")
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    cli.define_checkpoint_flags()
    flags.DEFINE_enum("method", "gradcam", list(attribution.METHODS), "Attribution method.")
    flags.DEFINE_integer("top_k", 3, "Styles explained per image, best first.")
    flags.DEFINE_string("out", None, "Folder of the PNGs (default: beside each image).")
    flags.DEFINE_integer("steps", 32, "integrated_gradients: points on the path.")
    flags.DEFINE_enum(
        "baseline", "blurred", list(attribution.BASELINES), "integrated_gradients: baseline."
    )
    flags.DEFINE_integer("batch_size", 8, "Images per jitted call.")
    app.run(main)
