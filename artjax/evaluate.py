"""Evaluation from a workdir alone:

  python -m artjax.evaluate --workdir checkpoints/<run> [--split test|val] \
      [--checkpoint best|latest|STEP]
  python -m artjax.evaluate --workdir checkpoints/<run> --images DIR   (paintings of unseen artists)
  python -m artjax.evaluate --workdir checkpoints/<run> --shortcuts   (accuracy with parts of the
      paintings taken away: border, centre, colour, composition)
  python -m artjax.evaluate --table checkpoints/a,checkpoints/b [--split test]   (a markdown table
      of evaluated runs, RESULTS.md's study columns)

A cross-validation workdir (artjax.cv) is evaluated as the bag of its fold models. What it writes:
`artjax.evaluation`.
"""

from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow and JAX are imported (see artjax.startup)
    from artjax import startup

    startup.before_imports()

import pathlib

from absl import app, flags

from artjax import cli, evaluation
from artjax.data import input_pipeline as ip
from artjax.data import synthetic


def print_artists(report) -> None:
    for artist, a in report["per_artist"].items():
        top = ", ".join(f"{c} {n}" for c, n in list(a["predicted"].items())[:3])
        print(
            f"  {artist:<28} listed {a['share_listed']:.3f} of {a['images']:>4}  "
            f"({','.join(a['listed_genres'])}; predicted: {top})"
        )
    if report["artists_not_scored"]:
        print(f"  not scored (no listed genre among the classes): {report['artists_not_scored']}")
    if report["overall_share_listed"] is not None:
        print(
            f"listed genre: overall {report['overall_share_listed']:.4f}, "
            f"macro over artists {report['macro_share_listed']:.4f}"
        )


def print_report(report) -> None:
    source = (
        f"bag of {report['models']} fold models"
        if report["models"] > 1
        else f"step {report['step']}"
    )
    print(f"{report['split']} split, {source} ({report['checkpoint']}), {report['images']} images")
    if "mean_average_precision" in report:
        print(
            f"mAP {report['mean_average_precision']:.4f}  top-1 within listed genres "
            f"{report['top1_within_listed']:.4f}"
        )
        for c, m in report["per_class"].items():
            ap = "n/a" if m["average_precision"] is None else f"{m['average_precision']:.3f}"
            print(f"  {c:<28} AP {ap}  support {m['support']}")
    else:
        print(
            f"accuracy {report['accuracy']:.4f}  "
            f"balanced accuracy {report['balanced_accuracy']:.4f}  "
            f"macro F1 {report['macro']['f1']:.4f}  weighted F1 {report['weighted']['f1']:.4f}"
        )
        for c, m in report["per_class"].items():
            print(
                f"  {c:<24} precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
                f"f1 {m['f1']:.3f}  support {m['support']}"
            )
    calibrated = report["calibration"]
    line = f"calibration: ECE {calibrated['ece']:.4f}, NLL {calibrated['nll']:.4f}"
    if "temperature" in calibrated:
        line += (
            f"; temperature {calibrated['temperature']:.3g}: ECE "
            f"{calibrated['ece_calibrated']:.4f}, NLL {calibrated['nll_calibrated']:.4f}; "
            f"uncertain {calibrated['uncertain_share']:.1%} (top probability below "
            f"{calibrated['uncertain_below']:.3f})"
        )
    print(line)
    print("per artist:")
    print_artists(report["artists"])


def print_shortcuts(shortcuts) -> None:
    clean = shortcuts["clean"]
    classes = list(clean["recall"])
    print(
        f"shortcut probes: change from clean (accuracy {clean['accuracy']:.4f}) in accuracy and "
        "per-class recall"
    )
    print(f"  {'probe':<16}{'accuracy':>10}" + "".join(f"{c[:12]:>14}" for c in classes))
    for name, probe in shortcuts["probes"].items():
        changes = [probe["recall_change"][c] for c in classes]
        print(
            f"  {name:<16}{probe['accuracy_change']:>+10.3f}"
            + "".join(f"{v:>+14.3f}" for v in changes)
        )


def main(argv):
    args = cli.start(argv)
    if args.table:
        with cli.reported_errors():
            print(evaluation.results_table(args.table, args.split), end="")
        return
    if not args.workdir:
        raise app.UsageError("--workdir is required (or --table)")
    if args.images:
        with cli.reported_errors():
            report = evaluation.evaluate_images(
                args.workdir, args.images, args.checkpoint, args.find_painting
            )
        if report["synthetic"]:
            print(synthetic.BANNER)
        print(f"{report['images']} images of {args.images}, {report['models']} model(s)")
        for name in ("unreadable_files", "files_without_artist_row"):
            if report[name]:
                print(f"  {name.replace('_', ' ')}: {report[name]}")
        if "paintings_found" in report:
            print(f"  a painting found and straightened in {report['paintings_found']} images")
        if "gate" in report:
            g = report["gate"]
            print(
                f"  not a painting: {g['not_a_painting']} of {report['images']} images "
                f"(distance over {g['threshold']:.3f})"
            )
        print_artists(report)
        out = pathlib.Path(args.workdir) / f"eval_images_{pathlib.Path(args.images).name}"
    else:
        with cli.reported_errors():
            if args.calibrate:
                evaluation.calibrate(args.workdir, args.checkpoint)
            if args.shortcuts:
                report = evaluation.shortcuts(args.workdir, args.split, args.checkpoint)
            else:
                report = evaluation.evaluate(args.workdir, args.split, args.checkpoint)
        if report["synthetic"]:
            print(synthetic.BANNER)
        print_report(report)
        if args.shortcuts:
            print_shortcuts(report["shortcuts"])
        out = pathlib.Path(args.workdir) / f"eval_{report['split']}"
    print(f"artifacts in {out}")


if __name__ == "__main__":
    cli.define_checkpoint_flags(required=False)  # --table takes its workdirs instead
    flags.DEFINE_enum("split", "test", list(ip.SPLITS), "Split to evaluate.")
    flags.DEFINE_string(
        "images", None, "A Kaggle-layout folder (artists.csv + images/) to report on."
    )
    flags.DEFINE_bool(
        "find_painting",
        None,
        "--images: find and straighten the painting in each image first (default: the run's).",
    )
    flags.DEFINE_list(
        "table", None, "Workdirs, evaluated on --split, to print as one markdown table."
    )
    flags.DEFINE_bool(
        "shortcuts",
        False,
        "Also evaluate the split with the border masked, the centre masked, in grey level and with "
        "its tiles shuffled: the change from clean accuracy per class goes into report.json and "
        "shortcuts.png.",
    )
    flags.DEFINE_bool(
        "calibrate",
        False,
        "First fit the temperature and the uncertain threshold on the validation split (runs "
        "train does not calibrate: multi-process ones, or calibration.enabled=False).",
    )
    app.run(main)
