"""Exploratory figures of the study: class distribution, pixel-intensity histograms per class, a
sample grid per class and a grid of augmented examples; counts per style and artist. The command is
`artjax.eda`. Drawn on matplotlib `Figure`s (no pyplot, so no backend to choose)."""

from __future__ import annotations

import collections
import pathlib

import numpy as np
import tensorflow as tf

from artjax.data import augment, synthetic
from artjax.data import input_pipeline as ip
from artjax.data import preprocess as pp
from artjax.figures import new_figure


def _title(text: str, is_synthetic: bool) -> str:
    return f"{text}\n[{synthetic.BANNER}]" if is_synthetic else text


def artist_counts(data: ip.PreparedData) -> dict:
    """(class, artist) -> images of the run's classes over all splits (a multi-genre artist's
    images count under each class it lists)."""
    counts = collections.Counter((c, r.artist) for r in data.rows for c in data.classes_of(r))
    return dict(sorted(counts.items()))


def class_table(data: ip.PreparedData) -> str:
    """One line per class: its images and artists (images each), for the logs and the EDA."""
    by_class = collections.defaultdict(dict)
    for (c, artist), n in artist_counts(data).items():
        by_class[c][artist] = n
    lines = [f"{'class':<28}{'images':>7}  artists (images)"]
    for c in data.classes:
        artists = sorted(by_class[c].items(), key=lambda kv: -kv[1])
        listing = ", ".join(f"{a} ({n})" for a, n in artists)
        lines.append(f"{c:<28}{sum(by_class[c].values()):>7}  {len(artists)}: {listing}")
    return "\n".join(lines)


def _images_per_class(data, config, n):
    ds = ip.split_dataset(data, "train").map(pp.compose(ip.decode_ops(config.data.image_size)))
    found = {c: [] for c in range(len(data.classes))}
    for ex in ds.as_numpy_iterator():
        if len(found[ex["label"]]) < n:
            found[ex["label"]].append(ex["image"])
        if all(len(v) >= n for v in found.values()):
            break
    return found


def write_figures(config, outdir: pathlib.Path, samples_per_class: int = 6) -> dict:
    outdir.mkdir(parents=True, exist_ok=True)
    data = ip.prepare_data(config.data, config.seed)
    names, syn = data.classes, data.synthetic
    totals = np.sum([data.counts[s] for s in ip.SPLITS], axis=0)

    fig = new_figure(figsize=(8, 4))
    ax = fig.subplots()
    bottom = np.zeros(len(names))
    for split in ip.SPLITS:
        ax.bar(names, data.counts[split], bottom=bottom, label=split)
        bottom += data.counts[split]
    ax.set_ylabel("images"), ax.legend(), ax.tick_params(axis="x", rotation=30)
    ax.set_title(_title("Images per style", syn), fontsize=9)
    fig.tight_layout(), fig.savefig(outdir / "class_distribution.png", dpi=100)

    samples = _images_per_class(data, config, samples_per_class)
    fig = new_figure(figsize=(6, 2 * len(names)))
    axes = fig.subplots(len(names), 1, sharex=True)
    for c, ax in enumerate(np.atleast_1d(axes)):
        pixels = (
            np.concatenate([im.reshape(-1, 3) for im in samples[c]])
            if samples[c]
            else np.zeros((0, 3))
        )
        for ch, colour in enumerate("rgb"):
            ax.hist(pixels[:, ch], bins=64, range=(0, 255), color=colour, alpha=0.5, density=True)
        ax.set_ylabel(names[c], rotation=0, ha="right", fontsize=8)
    fig.suptitle(_title("Pixel intensities per style (training samples)", syn), fontsize=9)
    fig.tight_layout(), fig.savefig(outdir / "pixel_histograms.png", dpi=100)

    def grid(images_by_row, path, title):
        cols = max(len(r) for r in images_by_row.values())
        fig = new_figure(figsize=(1.6 * cols, 1.6 * len(images_by_row)))
        axes = fig.subplots(len(images_by_row), cols, squeeze=False)
        for r, (label, row) in enumerate(images_by_row.items()):
            for c in range(cols):
                axes[r, c].axis("off")
                if c < len(row):
                    axes[r, c].imshow(np.clip(row[c], 0, 255).astype(np.uint8))
            axes[r, 0].set_title(label, fontsize=7, loc="left")
        fig.suptitle(_title(title, syn), fontsize=9)
        fig.tight_layout(), fig.savefig(path, dpi=100)

    grid({names[c]: samples[c] for c in samples}, outdir / "samples.png", "Samples per style")
    augment_one = augment.make_augment(**config.data.augment.to_dict())
    augmented = {}
    for c in samples:
        if samples[c]:
            image = samples[c][0]
            augmented[names[c]] = [image] + [
                augment_one(
                    {"image": tf.constant(image), "rng": tf.constant([config.seed, k], tf.int64)}
                )["image"].numpy()
                for k in range(5)
            ]
    grid(augmented, outdir / "augmented.png", "Original (left) and five augmentations")
    return dict(
        classes=names,
        totals=totals.tolist(),
        counts=data.counts,
        artists=artist_counts(data),
        synthetic=syn,
        duplicate_groups=data.builder.info.metadata["duplicate_groups"],
    )
