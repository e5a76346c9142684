"""Reads Kaggle's *Best Artworks of All Time* download into a table of labelled image files.

Accepted layouts under the data root (whichever is found first, `images` before `resized`):
  images/<Artist_Name>/<Artist_Name>_<N>.jpg          (unzipped, tidy)
  images/images/<Artist_Name>/<Artist_Name>_<N>.jpg   (the zip exactly as downloaded)
  resized/<Artist_Name>_<N>.jpg, resized/resized/...  (the flat, resized copy)
with `artists.csv` at the root. Artist names are matched to folders/files through `artist_key`,
which survives spaces vs underscores and the two Unicode forms of one name (NFC vs NFD, e.g.
Albrecht Dürer).

Files without a CSV row and CSV rows without files are reported, never silently dropped.
Multi-genre artists (a `genre` that lists several, e.g. "Expressionism,Abstractionism") are dropped
as in the study, unless asked for (the multi-label `genres` class set uses them).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import re
import statistics
import unicodedata

import pandas as pd

from artjax.data.wikiart import names as wikiart_names

# The study's six styles, in the order used for class indices by default.
STUDY_STYLES = (
    "Impressionism",
    "Cubism",
    "Expressionism",
    "Pop Art",
    "Byzantine Art",
    "Abstract Expressionism",
)
REQUIRED_COLUMNS = ("name", "genre")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# An artist's active period, the era every artist shares: from this age to their death.
ACTIVE_FROM_AGE = 20


class DataError(ValueError):
    """Bad input data: the message names the file or the key."""


def artist_key(name: str) -> str:
    """Canonical form of an artist name for matching CSV rows to folders and files."""
    name = unicodedata.normalize("NFC", name).strip().replace(" ", "_")
    return name.casefold()


@dataclasses.dataclass(frozen=True)
class Catalog:
    """Labelled images, plus what could not be matched."""

    # columns: path, filename, artist, style (the single genre; "" for a multi-genre artist) and
    # genres (every listed genre, comma-separated)
    images: pd.DataFrame
    unmatched_files: tuple[str, ...]  # files on disk whose artist has no CSV row
    artists_without_files: tuple[str, ...]  # CSV rows with no files on disk
    non_image_files: tuple[str, ...]  # files in the image tree that are not images
    multi_genre_artists: tuple[str, ...]  # dropped as in the study, unless included
    artist_genres: dict  # every CSV artist, files or not -> its listed genres


def listed_genres(genre: str) -> tuple[str, ...]:
    """The genres an artists.csv `genre` cell lists ("Expressionism,Abstractionism" -> two)."""
    return tuple(g.strip() for g in str(genre).split(",") if g.strip())


def read_artists(csv_path: pathlib.Path) -> pd.DataFrame:
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: artists.csv not found")
    try:
        artists = pd.read_csv(csv_path)
    except Exception as e:  # pandas raises several types for malformed CSVs
        raise DataError(f"{csv_path}: cannot be read as CSV ({e})") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in artists.columns]
    if missing:
        raise DataError(f"{csv_path}: missing column(s) {missing}; found {list(artists.columns)}")
    if artists["genre"].isna().any():
        bad = artists.loc[artists["genre"].isna(), "name"].tolist()
        raise DataError(f"{csv_path}: empty 'genre' for artist(s) {bad}")
    return artists


def find_image_dir(root: pathlib.Path) -> tuple[pathlib.Path, bool]:
    """Returns (directory, is_flat) for the first known layout under `root`."""
    candidates = [
        (root / "images" / "images", False),
        (root / "images", False),
        (root / "resized" / "resized", True),
        (root / "resized", True),
    ]
    for directory, flat in candidates:
        if directory.is_dir() and any(
            (p.is_dir() if not flat else p.suffix.lower() in IMAGE_SUFFIXES)
            for p in directory.iterdir()
        ):
            return directory, flat
    raise DataError(
        f"{root}: no image folder found; expected one of "
        + ", ".join(str(c.relative_to(root)) for c, _ in candidates)
    )


def _artist_from_flat_name(filename: str) -> str:
    stem = pathlib.Path(filename).stem
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


def read_catalog(root: str | pathlib.Path, include_multi_genre: bool = False) -> Catalog:
    """Matches every image under `root` to its artist's genres; the style label is the single genre
    of a single-genre artist. Multi-genre artists' images are included only when asked."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data directory does not exist")
    artists = read_artists(root / "artists.csv")
    image_dir, flat = find_image_dir(root)

    by_key: dict[str, tuple[str, str]] = {}
    for name, genre in zip(artists["name"], artists["genre"]):
        by_key[artist_key(name)] = (name, str(genre).strip())

    files: list[tuple[pathlib.Path, str]] = []  # (path, artist name as found on disk)
    non_images: list[str] = []
    if flat:
        entries = [(p, _artist_from_flat_name(p.name)) for p in image_dir.iterdir()]
    else:
        entries = [
            (p, folder.name)
            for folder in image_dir.iterdir()
            if folder.is_dir()
            for p in folder.iterdir()
        ]
    for path, disk_artist in sorted(entries):
        if path.name.startswith("."):
            continue  # .DS_Store and friends
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            non_images.append(str(path))
            continue
        files.append((path, disk_artist))

    rows, unmatched, seen_keys = [], [], set()
    multi_genre = sorted({n for n, g in by_key.values() if len(listed_genres(g)) > 1})
    for path, disk_artist in files:
        key = artist_key(disk_artist)
        if key not in by_key:
            unmatched.append(str(path))
            continue
        seen_keys.add(key)
        name, genre = by_key[key]
        genres = listed_genres(genre)
        if len(genres) > 1 and not include_multi_genre:
            continue  # multi-genre artists are dropped, as in the study
        rows.append(
            dict(
                path=str(path),
                filename=unicodedata.normalize("NFC", str(path.relative_to(image_dir))),
                artist=name,
                style=genres[0] if len(genres) == 1 else "",
                genres=",".join(genres),
            )
        )
    without_files = sorted(by_key[k][0] for k in by_key.keys() - seen_keys)
    if unmatched:
        logging.warning(
            "%d image file(s) have no artist row in artists.csv and are skipped: %s",
            len(unmatched),
            unmatched,
        )
    if without_files:
        logging.warning(
            "%d artist(s) in artists.csv have no image files: %s", len(without_files), without_files
        )
    if non_images:
        logging.warning("%d non-image file(s) skipped: %s", len(non_images), non_images)
    images = pd.DataFrame(rows, columns=["path", "filename", "artist", "style", "genres"])
    return Catalog(
        images=images,
        unmatched_files=tuple(unmatched),
        artists_without_files=tuple(without_files),
        non_image_files=tuple(non_images),
        multi_genre_artists=tuple(multi_genre),
        artist_genres={name: listed_genres(genre) for name, genre in by_key.values()},
    )


MULTI_LABEL_SETS = ("genres",)  # class sets whose target lists every genre of the artist


def resolve_classes(
    spec: str | list | tuple, available_styles, min_images: int = 0
) -> tuple[str, ...]:
    """The class names of a run: 'study' (the six), 'wikiart' (WikiArt's 27 styles), 'all' (every
    single-genre style), 'genres' (every listed genre; `available_styles` are then the genres) or a
    list.

    `available_styles`: the styles with images, or a {style: images} mapping; with a mapping, 'all'
    and 'genres' keep those with at least `min_images` images and name the others in a warning.
    Classes without images (a typo included) are skipped with one warning listing them.
    """
    counts = dict(available_styles) if isinstance(available_styles, dict) else None
    available = sorted(set(available_styles))
    if isinstance(spec, str) and spec == "study":
        wanted = list(STUDY_STYLES)
    elif isinstance(spec, str) and spec == "wikiart":
        wanted = list(wikiart_names.STYLES)
    elif isinstance(spec, str) and spec in ("all", *MULTI_LABEL_SETS):
        wanted = available
        if counts is not None and min_images:
            small = [s for s in available if counts[s] < min_images]
            if small:
                logging.warning(
                    "class set %r: %d style(s) with fewer than %d images are left out: %s",
                    spec,
                    len(small),
                    min_images,
                    {s: counts[s] for s in small},
                )
            wanted = [s for s in available if counts[s] >= min_images]
    elif isinstance(spec, str):
        wanted = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        wanted = list(spec)
    empty = [s for s in wanted if s not in available]
    if empty:
        logging.warning(
            "class(es) %s have no images and are skipped; styles with images: %s", empty, available
        )
    classes = tuple(s for s in wanted if s in available)
    if len(classes) < 2:
        raise DataError(
            f"class set {spec!r} leaves {list(classes)}: at least two styles with images are "
            f"needed; styles with images: {available}"
        )
    return classes


# --- Time: the active period of each artist, and the order of the styles in time ---------------


def active_period(years: str, artist: str = "?") -> tuple[int, int]:
    """An artists.csv `years` cell, "birth - death" (a hyphen or a dash), as the artist's active
    period: (birth + ACTIVE_FROM_AGE, death); (death, death) for one who died younger."""
    parts = re.split(r"\s*[-\u2013\u2014]\s*", str(years).strip())
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[1]) < int(parts[0]):
        raise DataError(f"artist {artist!r}: years {years!r} is not 'birth - death'")
    birth, death = int(parts[0]), int(parts[1])
    return min(birth + ACTIVE_FROM_AGE, death), death


def read_active_periods(csv_path) -> dict[str, tuple[int, int]]:
    """Every artists.csv artist's active period (`active_period`), files or not."""
    csv_path = pathlib.Path(csv_path)
    artists = read_artists(csv_path)
    if "years" not in artists.columns:
        raise DataError(f"{csv_path}: no 'years' column; found {list(artists.columns)}")
    try:
        return {n: active_period(y, n) for n, y in zip(artists["name"], artists["years"])}
    except DataError as e:
        raise DataError(f"{csv_path}: {e}") from None


def style_years(classes, artist_genres: dict, periods: dict) -> dict[str, float]:
    """Each class's place in time: the median over the artists who list it (every artists.csv
    row, multi-genre artists included) of the middle of their active period."""
    found = {}
    for style in classes:
        middles = [sum(periods[a]) / 2 for a, g in artist_genres.items() if style in g]
        if not middles:
            raise DataError(f"style {style!r}: no artist in artists.csv lists it")
        found[style] = statistics.median(middles)
    return found


def time_neighbours(classes, artist_genres: dict, periods: dict) -> dict[str, tuple[str, ...]]:
    """The classes ordered by `style_years` (ties by name): each class's neighbours in time, the
    class just before it and the one just after."""
    years = style_years(classes, artist_genres, periods)
    order = sorted(classes, key=lambda s: (years[s], s))
    return {s: tuple(order[max(i - 1, 0) : i] + order[i + 1 : i + 2]) for i, s in enumerate(order)}
