"""Top-k styles of paintings from a trained workdir:
`python -m artjax.predict --workdir checkpoints/<run> [--top_k 3] [--checkpoint best] IMAGE...`
(applications use `artjax.serving.inference.Predictor`). Probabilities are temperature-scaled
where the run was calibrated on validation; below the calibrated threshold a prediction is
marked uncertain. A model with an era head also prints the period it estimates ("about
1870-1900").

The painting is found in the photo and straightened first (the run's `finder`;
`--find_painting=false` turns it off), and where the run has a gate (`python -m artjax.fit_gate`)
an image that does not look like a painting is printed as `not a painting`, with its distance
and the threshold."""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX are imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

from absl import app, flags

from artjax import cli
from artjax.data import synthetic
from artjax.serving.inference import Predictor


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("give one or more image files")
    cli.setup_process()
    with cli.reported_errors():
        predictor = Predictor(
            flags.FLAGS.workdir, flags.FLAGS.checkpoint, find_painting=flags.FLAGS.find_painting
        )
    if predictor.synthetic:
        print(synthetic.BANNER)
    failed = False
    for path in argv[1:]:
        try:
            found = predictor.describe_file(path, flags.FLAGS.top_k)
        except (ValueError, OSError) as e:
            print(f"error: {e}")
            failed = True
            continue
        line = f"{path}: "
        if found.painting is False:
            line += (
                f"not a painting (distance {found.painting_distance:.3f} > threshold "
                f"{predictor.gate.threshold:.3f}); as a painting: "
            )
        line += ", ".join(f"{style} {p:.3f}" for style, p in found.ranked)
        if predictor.multi_label:
            line += f"  listed genres: {', '.join(found.listed) or 'none'}"
        if found.period:
            line += f"  period: {found.period}"
        if found.uncertain:
            line += f"  [uncertain: top probability below {predictor.uncertain_below:.3f}]"
        if found.found_painting:
            corners = " ".join(f"({x:.0f},{y:.0f})" for x, y in found.corners)
            line += f"  painting found at {corners}"
        elif found.found_painting is False:
            line += "  (no painting outline found: the whole image judged)"
        print(line)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    cli.define_checkpoint_flags()
    flags.DEFINE_integer("top_k", 3, "How many styles to print per image.")
    flags.DEFINE_bool(
        "find_painting", None, "Find and straighten the painting first (default: the run's)."
    )
    app.run(main)
