"""The study's figures of an evaluated split. Drawn on matplotlib `Figure`s (no pyplot), so no
backend needs choosing and nothing is shown on a screen."""

from __future__ import annotations

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
    image_dir, flat = catalog.find_image_dir(pathlib.Path(data_root))
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
