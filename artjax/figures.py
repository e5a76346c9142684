"""The study's figures of an evaluated split. Drawn on matplotlib `Figure`s (no pyplot), so no
backend needs choosing and nothing is shown on a screen."""

from __future__ import annotations

import collections
import pathlib
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from artjax import checkpointing
from artjax.data import catalog

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(**kwargs) -> Figure:
    """A matplotlib Figure. matplotlib is imported here, at the first drawing: importing it takes
    about a second of the start of every command, most of which draw nothing."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig: Figure, path: pathlib.Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def confusion_matrix(path, cm, classes, title_suffix: str = "") -> None:
    cm = np.asarray(cm)
    fig = new_figure(figsize=(7, 6))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(
            j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black"
        )
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix{title_suffix}", fontsize=9)
    _save(fig, path)


def classification_report(path, report, classes, title_suffix: str = "") -> None:
    table = np.array(
        [[report["per_class"][c][k] for k in ("precision", "recall", "f1")] for c in classes]
    )
    fig = new_figure(figsize=(6, 0.5 * len(classes) + 1.5))
    ax = fig.subplots()
    ax.imshow(table, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(table):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center")
    ax.set_xticks(range(3), ["precision", "recall", "f1"])
    ax.set_yticks(range(len(classes)), classes)
    ax.set_title(f"Classification report{title_suffix}", fontsize=9)
    _save(fig, path)


def training_curves(path, workdir, title_suffix: str = "") -> bool:
    """Train/val accuracy and loss per epoch from the workdir's metrics.jsonl; False if it has
    none."""
    history = checkpointing.read_metrics(workdir)
    if not history:
        return False
    fig = new_figure(figsize=(10, 4))
    epochs = [h["epoch"] for h in history]
    for ax, kind in zip(fig.subplots(1, 2), ("accuracy", "loss")):
        ax.plot(epochs, [h[f"train_{kind}"] for h in history], label="train")
        ax.plot(epochs, [h[f"val_{kind}"] for h in history], label="val")
        ax.set_xlabel("epoch")
        ax.set_title(kind + title_suffix, fontsize=9)
        ax.legend()
    _save(fig, path)
    return True


def misclassified(
    path, filenames, labels, predictions, classes, data_root, title_suffix: str = "", limit=24
):
    """A grid of the first `limit` misclassified images, read from the download; False if none."""
    wrong = np.nonzero(predictions != labels)[0][:limit]
    if not len(wrong):
        return False
    try:
        image_dir, flat = catalog.find_image_dir(pathlib.Path(data_root))
    except catalog.DataError:  # WikiArt: paths under the root (parquet rows: no file, no image)
        image_dir, flat = pathlib.Path(data_root), False
        if (image_dir / "wikiart").is_dir():  # ArtGAN's zip: the style folders under wikiart/
            image_dir = image_dir / "wikiart"
    cols = 6
    rows = -(-len(wrong) // cols)
    fig = new_figure(figsize=(2.2 * cols, 2.5 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        name = filenames[i].decode()
        image_path = image_dir / (pathlib.Path(name).name if flat else name)
        if image_path.is_file():
            ax.imshow(Image.open(image_path).convert("RGB"))
        ax.set_title(f"true: {classes[labels[i]]}\npred: {classes[predictions[i]]}", fontsize=7)
    fig.suptitle(f"Misclassified{title_suffix}", fontsize=9)
    _save(fig, path)
    return True


def artist_predictions(path, report, classes, title_suffix: str = "") -> bool:
    """One stacked bar per artist: the shares of their paintings given each class, titled with the
    share given one of the artist's listed genres; False when no artist was scored."""
    per_artist = report["per_artist"]
    if not per_artist:
        return False
    artists = list(per_artist)
    fig = new_figure(figsize=(max(6, 0.6 * len(artists) + 3), 5))
    ax = fig.subplots()
    bottom = np.zeros(len(artists))
    for c in classes:
        shares = np.array(
            [per_artist[a]["predicted"].get(c, 0) / per_artist[a]["images"] for a in artists]
        )
        if shares.any():
            ax.bar(range(len(artists)), shares, bottom=bottom, label=c)
            bottom += shares
    labels = [f"{a}\n{per_artist[a]['share_listed']:.0%} listed" for a in artists]
    ax.set_xticks(range(len(artists)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("share of the artist's paintings")
    overall, macro = report["overall_share_listed"], report["macro_share_listed"]
    ax.set_title(
        f"Predicted classes per artist: listed genre overall {overall:.1%}, macro {macro:.1%}"
        f"{title_suffix}",
        fontsize=9,
    )
    ax.legend(fontsize=6, ncols=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path)
    return True


def reliability_diagram(path, curves: dict, title_suffix: str = "") -> None:
    """Accuracy against confidence per bin (`calibration.reliability`), one line per curve
    (e.g. before and after temperature scaling), with the diagonal of perfect calibration."""
    fig = new_figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for name, bins in curves.items():
        shown = [b for b in bins if b["images"]]
        ax.plot([b["confidence"] for b in shown], [b["accuracy"] for b in shown], "o-", label=name)
    ax.set_xlabel("top probability")
    ax.set_ylabel("share right")
    ax.set_title("reliability" + title_suffix, fontsize=9)
    ax.legend()
    _save(fig, path)


def shortcut_changes(path, shortcuts: dict, title_suffix: str = "") -> None:
    """Change from clean accuracy (overall and per class recall) under each shortcut probe: a
    diverging heatmap, rows the probes, columns the classes."""
    classes = list(shortcuts["clean"]["recall"])
    probes = list(shortcuts["probes"])
    table = np.array(
        [
            [shortcuts["probes"][p]["accuracy_change"]]
            + [shortcuts["probes"][p]["recall_change"][c] for c in classes]
            for p in probes
        ]
    )
    columns = ["accuracy"] + classes
    fig = new_figure(figsize=(1.0 * len(columns) + 2.5, 0.6 * len(probes) + 2.2))
    ax = fig.subplots()
    ax.imshow(table, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(table):
        ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(range(len(probes)), [p.replace("_", " ") for p in probes])
    clean = shortcuts["clean"]["accuracy"]
    ax.set_title(
        f"Change from clean (accuracy {clean:.3f}) under each probe{title_suffix}", fontsize=9
    )
    _save(fig, path)


def explanation(path, image, ranked, maps, method: str, name: str, title_suffix: str = "") -> None:
    """The painting (`name`) as the model saw it, then one heatmap over it per ranked style, titled
    with the style and its probability."""
    fig = new_figure(figsize=(3.0 * (1 + len(ranked)), 3.4))
    axes = fig.subplots(1, 1 + len(ranked), squeeze=False)[0]
    axes[0].imshow(image)
    axes[0].set_title(f"{name}{title_suffix}", fontsize=8)
    for ax, (style, probability), heat in zip(axes[1:], ranked, maps):
        ax.imshow(image)
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        ax.set_title(f"{style} {probability:.2f}\n({method.replace('_', ' ')})", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, path)


# --- the unfreezing curve (issue 34): python -m artjax.figures depth --runs ... --cvs ...


def depth_point(workdir) -> tuple[str, float, str]:
    """(depth label, share of the backbone's layers with parameters that train, the optimizer's
    name) of a training or CV workdir, from its recorded config (transfer.plan)."""
    import json

    from artjax import configs, train_state, transfer

    workdir = pathlib.Path(workdir)
    record = workdir / checkpointing.RUN_FILE
    if record.is_file():
        run = checkpointing.read_run(workdir)
        config, classes = configs.from_record(run["config"]), len(run["classes"])
    else:  # a CV workdir: its base config (artjax.crossval)
        stored = json.loads((workdir / "cv.json").read_text())
        config = configs.from_record(stored["config"])
        classes = 6  # the share does not depend on the head
    model, the_plan = train_state.build_model(config, classes)
    paths, _ = transfer.layer_paths(model, config.data.image_size)
    backbone = [p for p in paths if p.split("/")[0] not in transfer.HEADS]
    trained = [p for p in the_plan.trainable if p.split("/")[0] not in transfer.HEADS]
    return depth_label(config.freeze), len(trained) / len(backbone), config.optimizer.name


def depth_label(freeze) -> str:
    """A point's name on the curve: the trainable share, and for a head trained on cached
    features (the frozen recipe: fixed views, no random crops) that it was."""
    label = {"last_fraction": f"last {freeze.fraction:.0%}", "all": "whole"}.get(
        freeze.trainable, freeze.trainable
    )
    return f"{label}, cached views" if freeze.feature_cache else label


def depth_rows(runs, cvs) -> list[dict]:
    """The points of the curve: each run's accuracy on its evaluated test split (`artjax.evaluate
    --split test`) and each CV's macro listed share of held-out artists, at their trainable
    shares."""
    import json

    rows = []
    for kind, workdirs in (("seen", runs), ("unseen", cvs)):
        for w in workdirs:
            w = pathlib.Path(w)
            path = w / ("eval_test/report.json" if kind == "seen" else "cv_report.json")
            report = json.loads(path.read_text())
            if kind == "seen":
                value, count = report["accuracy"], report["images"]
            else:
                value, count = report["pooled"]["artists"]["macro_share_listed"], None
            label, share, optimizer = depth_point(w)
            rows.append(
                dict(
                    kind=kind,
                    workdir=str(w),
                    label=label,
                    share=share,
                    optimizer=optimizer,
                    value=value,
                    count=count,
                )
            )
    return rows


def _epochs(workdir: pathlib.Path) -> list[dict]:
    """The per-epoch records (with validation) of a training workdir's metrics.jsonl."""
    return [m for m in checkpointing.read_metrics(workdir) if "val_accuracy" in m]


def _training(workdirs) -> tuple[float, list[float]]:
    """(training minutes summed over the workdirs, mean validation accuracy by epoch)."""
    epochs = [_epochs(w) for w in workdirs]
    curves = [[m["val_accuracy"] for m in e] for e in epochs]
    minutes = sum(m.get("epoch_seconds", 0.0) for e in epochs for m in e) / 60
    length = min(len(c) for c in curves)
    return minutes, [float(np.mean([c[i] for c in curves])) for i in range(length)]


def _era_cell(era: dict) -> str:
    if not era:  # no era head
        return "-"
    return f"{era['mae_to_period']:.0f} y ({era['share_within_25']:.2f})"


def _curve_cell(curve) -> str:
    return " ".join(f"{v:.3f}" for v in curve)


def depth_table(rows) -> str:
    """Markdown tables of the unfreezing curve's points (`depth_rows`): each run's evaluated test
    split (seen painters) and each CV's held-out artists (unseen painters), with their training
    curves."""
    import json

    runs = [r for r in rows if r["kind"] == "seen"]
    cvs = [r for r in rows if r["kind"] == "unseen"]
    lines = []
    if runs:
        lines += [
            "| run | trainable share | test accuracy | balanced | macro F1 | ECE raw -> calibrated "
            "| era: mean distance to the period, macro over artists (within 25 y) "
            "| training minutes | validation accuracy by epoch |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in runs:
            w = pathlib.Path(row["workdir"])
            r = json.loads((w / "eval_test/report.json").read_text())
            era = (r.get("era") or {}).get("macro_over_artists", {})
            cal = r["calibration"]
            minutes, curve = _training([w])
            lines.append(
                f"| {w.name} | {row['share']:.1%} | {r['accuracy']:.3f} "
                f"| {r['balanced_accuracy']:.3f} | {r['macro']['f1']:.3f} "
                f"| {cal['ece']:.3f} -> {cal.get('ece_calibrated', float('nan')):.3f} "
                f"| {_era_cell(era)} | {minutes:.1f} | {_curve_cell(curve)} |"
            )
    if cvs:
        lines += [
            "",
            "| CV | trainable share | listed share, macro over held-out artists | per fold "
            "(mean ± std) | of the paintings | era: mean distance to the period (within 25 y) "
            "| ECE raw -> cross-fitted | training minutes, all folds "
            "| validation accuracy by epoch, mean of folds |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in cvs:
            w = pathlib.Path(row["workdir"])
            r = json.loads((w / "cv_report.json").read_text())
            folds = json.loads((w / "cv.json").read_text())["fold_workdirs"]
            share = r["fold_summary"]["macro_share_listed"]
            era = (r.get("era") or {}).get("overall", {})
            cal = r["heldout_calibration"]
            minutes, curve = _training([w / f for f in folds])
            lines.append(
                f"| {w.name} | {row['share']:.1%} "
                f"| **{row['value']:.3f}** "
                f"| {share['mean']:.3f} ± {share['std']:.3f} "
                f"| {r['pooled']['artists']['overall_share_listed']:.3f} "
                f"| {_era_cell(era)} "
                f"| {cal['ece']:.3f} -> {cal.get('ece_cross_fitted', float('nan')):.3f} "
                f"| {minutes:.1f} | {_curve_cell(curve)} |"
            )
    return "\n".join(lines)


def depth_places(rows) -> list[tuple[float, str]]:
    """The figure's places, left to right: each (trainable share, label) of the points once, by
    share (then label)."""
    return sorted({(r["share"], r["label"]) for r in rows})


def depth_series(rows) -> list[tuple[str, str, list[dict]]]:
    """The figure's lines: (kind, optimizer, its rows) for each kind (seen, then unseen) and each
    optimizer, the most-measured optimizer of a kind first."""
    series = []
    for kind in ("seen", "unseen"):
        mine = [r for r in rows if r["kind"] == kind]
        counts = collections.Counter(r["optimizer"] for r in mine)
        names = sorted(counts, key=lambda name: (-counts[name], name))
        series += [(kind, name, [r for r in mine if r["optimizer"] == name]) for name in names]
    return series


OPTIMIZER_MARKERS = {"adam": "o", "sgd": "^", "rmsprop": "v"}


def depth_curve(path, rows, title_suffix: str = "") -> None:
    """Accuracy on seen painters (a fixed test split, with its binomial standard error) and the
    listed share on unseen ones (a leave-artists-out CV) at each trainable share of the backbone,
    in order: one place per depth (0% and 2% would overlap on a linear axis), each named with its
    share; a line per optimizer, the values written beside the first line of each kind."""
    fig = new_figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    depths = depth_places(rows)
    place = {depth: i for i, depth in enumerate(depths)}
    kinds = {
        "seen": ("-", "seen painters: accuracy, fixed test split", (0, 7)),
        "unseen": ("--", "unseen painters: listed share, leave-artists-out CV", (0, -15)),
    }
    annotated = set()
    for kind, optimizer, mine in depth_series(rows):
        line, name, offset = kinds[kind]
        mine = sorted(mine, key=lambda r: place[(r["share"], r["label"])])
        xs = [place[(r["share"], r["label"])] for r in mine]
        ys = [r["value"] for r in mine]
        # a binomial standard error where the points are paintings (a test split)
        errors = [
            np.sqrt(y * (1 - y) / r["count"]) if r["count"] else 0.0 for r, y in zip(mine, ys)
        ]
        marker = OPTIMIZER_MARKERS.get(optimizer, "s")
        label = f"{name}, {optimizer}"
        ax.errorbar(xs, ys, yerr=errors, fmt=marker + line, capsize=3, label=label, alpha=0.85)
        if kind in annotated:
            continue
        annotated.add(kind)
        for x, y in zip(xs, ys):
            ax.annotate(
                f"{y:.3f}",
                (x, y),
                textcoords="offset points",
                xytext=offset,
                ha="center",
                fontsize=7,
            )
    ax.set_xticks(range(len(depths)))
    ax.set_xticklabels([f"{label}\n{share:.0%}" for share, label in depths], fontsize=8)
    ax.set_xlabel("the backbone's layers that train (share of its layers), in order")
    ax.set_ylabel("share of paintings given their style")
    ax.set_xlim(-0.5, len(depths) - 0.5)
    values = [r["value"] for r in rows] or [0.5]
    ax.set_ylim(max(0.0, min(values) - 0.1), min(1.0, max(values) + 0.05))
    ax.legend(fontsize=8, loc="center right")
    ax.set_title(f"EfficientNet-Lite0: how much of the backbone learns{title_suffix}", fontsize=9)
    _save(fig, path)


def main(argv) -> None:
    from absl import flags

    if len(argv) != 2 or argv[1] != "depth":
        raise SystemExit(
            "usage: python -m artjax.figures depth --runs W,... [--cvs CV,...] --output PATH"
        )
    F = flags.FLAGS
    rows = depth_rows(F.runs, F.cvs)
    for r in rows:
        print(
            f"{r['kind']:<7} {r['label']:<18} {100 * r['share']:5.1f}% {r['optimizer']:<8} "
            f"{r['value']:.4f}  {r['workdir']}"
        )
    depth_curve(pathlib.Path(F.output), rows, F.title_suffix)
    print(f"wrote {F.output}")
    print(depth_table(rows))


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_list("runs", [], "Training workdirs evaluated on the test split (seen painters).")
    flags.DEFINE_list("cvs", [], "Leave-artists-out CV workdirs (unseen painters).")
    flags.DEFINE_string("output", "depth_curve.png", "The PNG to write.")
    flags.DEFINE_string("title_suffix", "", "Appended to the title (e.g. the CPU and date).")
    app.run(main)
