"""The "not a painting" gate (`artjax.gate`):

  python -m artjax.fit_gate --workdir checkpoints/<cv>   # a leave-artists-out CV
  python -m artjax.fit_gate --workdir checkpoints/<run> --from_cv checkpoints/<cv>

On a CV workdir: the threshold from its held-out artists' paintings (`gate.json`) and the CV's own
gate (`gate.npz`, for its bag). On a run: its training paintings as references, with the CV's
threshold (`gate.npz`). `artjax.predict`, `artjax.evaluate --images`, the export and the service
then say when an image does not look like a painting.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX are imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

from absl import app, flags

from artjax import checkpointing, cli, configs, gate_fitting


def main(argv):
    args = cli.start(argv)
    with cli.reported_errors():
        if checkpointing.is_cv_workdir(args.workdir):
            first = checkpointing.fold_workdirs(args.workdir)[0]
            config = configs.from_record(checkpointing.read_run(first)["config"])
            fitted = gate_fitting.fit_cv(args.workdir, config.gate)
            print(
                f"gate threshold {fitted['threshold']:.4f} (the {fitted['percentile']:g}th "
                f"percentile of {fitted['paintings']} held-out paintings' distances, k="
                f"{fitted['k']}) written to {args.workdir}/gate.json and gate.npz"
            )
            return
        if not args.from_cv:
            raise app.UsageError("a run's gate takes its threshold from a CV: give --from_cv")
        found = gate_fitting.fit_run(args.workdir, args.from_cv)
        print(
            f"gate of {args.workdir}: {len(found.references)} training paintings, threshold "
            f"{found.threshold:.4f} from {args.from_cv}"
        )


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "A training workdir or a leave-artists-out CV workdir.")
    flags.DEFINE_string(
        "from_cv", "", "The CV (already fitted) whose threshold a run's gate takes."
    )
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
