"""A small synthetic painting set in Kaggle's layout: the embedded default when no data is
configured.

Each style gets a procedural texture a model can learn (dots for Impressionism, hard-edged facets
for Cubism, ...), two fake artists per style, and one multi-genre artist that must be dropped, so
the whole pipeline runs end to end without the real download. Everything built on it says it is
SYNTHETIC.
"""

from __future__ import annotations

import csv
import logging
import pathlib

import numpy as np
from PIL import Image, ImageDraw

from artjax.data.catalog import STUDY_STYLES

MARKER = "SYNTHETIC.txt"
BANNER = "SYNTHETIC DATA: procedural textures, not paintings; figures on it say nothing about art"


def _draw(style: str, rng: np.random.Generator, size: int) -> Image.Image:
    base = tuple(int(v) for v in rng.integers(60, 200, 3))
    im = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(im)
    s = size
    colour = lambda lo=0, hi=256: tuple(int(v) for v in rng.integers(lo, hi, 3))
    if style == "Impressionism":  # many small soft dots
        for _ in range(300):
            x, y, r = rng.integers(0, s), rng.integers(0, s), rng.integers(1, max(2, s // 30))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour(80, 256))
    elif style == "Cubism":  # hard-edged facets in muted tones
        for _ in range(12):
            pts = [tuple(int(v) for v in rng.integers(0, s, 2)) for _ in range(3)]
            draw.polygon(pts, fill=colour(60, 160), outline=(20, 20, 20))
    elif style == "Expressionism":  # bold diagonal strokes
        for _ in range(25):
            x, y = rng.integers(0, s, 2)
            d = int(rng.integers(s // 4, s // 2))
            draw.line(
                [(int(x), int(y)), (int(x) + d, int(y) - d)], fill=colour(), width=max(2, s // 16)
            )
    elif style == "Pop Art":  # flat saturated blocks with a halftone grid
        for _ in range(4):
            x0, y0 = rng.integers(0, s // 2, 2)
            draw.rectangle(
                [int(x0), int(y0), int(x0) + s // 2, int(y0) + s // 2],
                fill=[(255, 0, 128), (255, 230, 0), (0, 200, 255)][int(rng.integers(3))],
            )
        step = max(4, s // 12)
        for x in range(0, s, step):
            for y in range(0, s, step):
                draw.ellipse([x, y, x + step // 3, y + step // 3], fill=(0, 0, 0))
    elif style == "Byzantine Art":  # gold ground, dark robed figures with haloes
        im.paste(
            tuple(
                int(v)
                for v in (rng.integers(170, 230), rng.integers(130, 180), rng.integers(20, 70))
            ),
            [0, 0, s, s],
        )
        for _ in range(int(rng.integers(1, 4))):
            c, w = int(rng.integers(s // 6, 5 * s // 6)), int(rng.integers(s // 12, s // 5))
            top = int(rng.integers(0, s // 3))
            draw.ellipse(
                [c - w, top, c + w, top + 2 * w], fill=(240, 210, 90), outline=(120, 80, 10)
            )
            draw.rectangle([c - w, top + 2 * w, c + w, s], fill=colour(10, 90))
    elif style == "Abstract Expressionism":  # drips and splatters over a dark ground
        im.paste(colour(0, 60), [0, 0, s, s])
        for _ in range(60):
            pts = [tuple(int(v) for v in rng.integers(0, s, 2)) for _ in range(4)]
            draw.line(pts, fill=colour(), width=int(rng.integers(1, 4)))
    else:
        raise ValueError(f"no synthetic texture for style {style!r}")
    return im


def generate(root: str | pathlib.Path, images_per_artist: int = 20, size: int = 96, seed: int = 0):
    """Writes artists.csv + images/<Artist>/<Artist>_<N>.jpg under `root`; returns `root`."""
    root = pathlib.Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for style in STUDY_STYLES:
        for a in range(2):
            name = f"Synthetic {style.replace(' ', '')} Painter {a + 1}"
            rows.append((name, style, images_per_artist))
            folder = root / "images" / name.replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(1, images_per_artist + 1):
                _draw(style, rng, size).save(
                    folder / f"{name.replace(' ', '_')}_{n}.jpg", quality=90
                )
    multi = "Synthetic Multi Genre Painter"  # its images must be dropped, as in the study
    rows.append((multi, "Cubism,Pop Art", 3))
    folder = root / "images" / multi.replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, 4):
        _draw("Cubism", rng, size).save(folder / f"{multi.replace(' ', '_')}_{n}.jpg", quality=90)
    with open(root / "artists.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["id", "name", "years", "genre", "nationality", "bio", "wikipedia", "paintings"]
        )
        for i, (name, genre, count) in enumerate(rows):
            writer.writerow([i, name, "1900 - 1950", genre, "Synthetic", BANNER, "", count])
    (root / MARKER).write_text(BANNER + "\n")
    return root


def ensure(root: str | pathlib.Path, **kwargs) -> pathlib.Path:
    """Generates the synthetic set at `root` unless it is already there."""
    root = pathlib.Path(root)
    if not (root / MARKER).is_file():
        logging.warning("%s: generating at %s", BANNER, root)
        generate(root, **kwargs)
    return root


def is_synthetic(root: str | pathlib.Path) -> bool:
    return (pathlib.Path(root) / MARKER).is_file()
