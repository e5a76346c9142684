"""The three ways WikiArt is distributed, each read into one `Listing`: a row per painting, with its
labels, and every file or row that was skipped, by reason.

  artgan              github.com/cs-chan/ArtGAN "WikiArt Dataset": one folder per style of
                      `artist-slug_title-slug.jpg`; Style/style_{train,val}.csv (`path,class`, no
                      header), Style/style_class.txt (`index Name`); Genre/ alike (its paths are
                      style-folder paths). The CSVs may instead sit together in wikiart_csv/, and
                      the style folders in wikiart/. Release split: style_train / style_val.
  huggingface         huggan/wikiart: parquet shards with `image` (encoded bytes), `artist`,
                      `genre`, `style` as class indices, named in the shards' features metadata.
                      Artist 0 is "Unknown Artist" (one pseudo-artist here), genre 10 "Unknown
                      Genre" (no genre). No release split.
  painter_by_numbers  Kaggle's all_data_info.csv, train/ and test/. A `date` per painting
                      (`artjax.data.dates`). Release split: `in_train`.

`detect` recognises the layout from the files (or takes it by name: data.source); Best Artworks is
the fourth layout artjax reads (`artjax.data.best_artworks`).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import unicodedata
from collections.abc import Callable

import numpy as np
import pandas as pd

from artjax.data import catalog as catalog_lib
from artjax.data import dates
from artjax.data.wikiart import names
from artjax.registry import Registry

COLUMNS = ("filename", "path", "row", "artist", "style", "genre", "year_start", "year_end")
RELEASE_TRAIN, RELEASE_TEST = "train", "test"
UNKNOWN_ARTIST = "Unknown Artist"


@dataclasses.dataclass(frozen=True)
class Listing:
    """A download's paintings: COLUMNS + `release` ("train", "test", or "" without a release
    split). `path` is the file (or parquet shard) and `row` the shard's row (-1: a file). Years
    are NaN where unknown. `skipped`: reason -> the files or rows left out for it."""

    layout: str
    images: pd.DataFrame
    skipped: dict


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", str(text))


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "release"])
    return frame.astype({"row": np.int64, "year_start": np.float64, "year_end": np.float64})


def _disk_files(image_root: pathlib.Path, folders) -> tuple[dict, list[str]]:
    """NFC relative path -> path of every image under `folders`, and the non-image files."""
    found, others = {}, []
    for folder in folders:
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix.lower() in catalog_lib.IMAGE_SUFFIXES:
                found[_nfc(path.relative_to(image_root).as_posix())] = path
            else:
                others.append(str(path))
    return found, others


# --- ArtGAN ------------------------------------------------------------------------------------


ARTGAN_TASK_DIRS = ("Style", "Genre", "Artist", "wikiart_csv")  # not style folders


def _artgan_task_file(root: pathlib.Path, task: str, name: str) -> pathlib.Path | None:
    for candidate in (root / task / name, root / "wikiart_csv" / name):
        if candidate.is_file():
            return candidate
    return None


def _artgan_classes(path: pathlib.Path) -> dict[int, str]:
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            index, name = line.strip().split(maxsplit=1)
            found[int(index)] = name.strip()
    return found


def _artgan_task(root: pathlib.Path, task: str) -> pd.DataFrame | None:
    """path, class name, release split of a task's CSVs; None when the task is not there."""
    lower = task.lower()
    class_file = _artgan_task_file(root, task, f"{lower}_class.txt")
    if class_file is None:
        return None
    classes = _artgan_classes(class_file)
    parts = []
    for split, release in (("train", RELEASE_TRAIN), ("val", RELEASE_TEST)):
        csv = _artgan_task_file(root, task, f"{lower}_{split}.csv")
        if csv is None:
            raise catalog_lib.DataError(f"{class_file.parent}: {lower}_{split}.csv not found")
        table = pd.read_csv(csv, header=None, names=["path", "index"], encoding="utf-8")
        unknown = sorted(set(table["index"]) - set(classes))
        if unknown:
            raise catalog_lib.DataError(f"{csv}: class indices {unknown} not in {class_file}")
        parts.append(
            pd.DataFrame(
                {
                    "path": table["path"].map(_nfc),
                    "name": table["index"].map(classes),
                    "release": release,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _slug_artist(filename: str) -> str:
    """'Impressionism/edgar-degas_dancers.jpg' -> 'edgar-degas'."""
    return pathlib.PurePosixPath(filename).name.split("_", 1)[0]


def read_artgan(root: pathlib.Path) -> Listing:
    style = _artgan_task(root, "Style")
    if style is None:
        raise catalog_lib.DataError(f"{root}: Style/style_class.txt not found")
    genre = _artgan_task(root, "Genre")
    genre_of = {} if genre is None else dict(zip(genre["path"], genre["name"]))
    image_root = root / "wikiart" if (root / "wikiart").is_dir() else root
    folders = [p for p in image_root.iterdir() if p.is_dir() and p.name not in ARTGAN_TASK_DIRS]
    on_disk, non_images = _disk_files(image_root, folders)
    duplicated = style["path"].duplicated()
    listed = style[~duplicated]
    missing = sorted(p for p in listed["path"] if p not in on_disk)
    listed = listed[listed["path"].isin(on_disk)]
    aliases = names.artist_aliases(listed["path"].map(_slug_artist))
    rows = [
        dict(
            filename=p,
            path=str(on_disk[p]),
            row=-1,
            artist=aliases[_slug_artist(p)],
            style=names.style_name(n),
            genre=names.genre_name(genre_of.get(p, "")),
            year_start=np.nan,
            year_end=np.nan,
            release=r,
        )
        for p, n, r in zip(listed["path"], listed["name"], listed["release"])
    ]
    skipped = {
        "missing_files": missing,
        "unlisted_files": sorted(str(on_disk[p]) for p in on_disk.keys() - set(style["path"])),
        "non_image_files": non_images,
        "duplicate_rows": sorted(style.loc[duplicated, "path"]),
    }
    return Listing("artgan", _frame(rows), skipped)


# --- Hugging Face ------------------------------------------------------------------------------


def _parquet_shards(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in root.rglob("*.parquet") if p.is_file())


def _feature_names(shard: pathlib.Path) -> dict[str, list[str]]:
    """column -> class names, from the Hugging Face features metadata in the shard's schema."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(shard).metadata or {}
    if b"huggingface" not in meta:
        raise catalog_lib.DataError(f"{shard}: no Hugging Face features metadata (class names)")
    features = json.loads(meta[b"huggingface"])["info"]["features"]
    missing = [c for c in ("artist", "genre", "style") if "names" not in features.get(c, {})]
    if missing or "image" not in features:
        raise catalog_lib.DataError(
            f"{shard}: needs the columns image, artist, genre, style with class names; "
            f"found {sorted(features)}"
        )
    return {c: features[c]["names"] for c in ("artist", "genre", "style")}


def read_huggingface(root: pathlib.Path) -> Listing:
    import pyarrow.parquet as pq

    shards = _parquet_shards(root)
    if not shards:
        raise catalog_lib.DataError(f"{root}: no .parquet shards")
    rows = []
    for shard in shards:
        classes = _feature_names(shard)
        table = pq.read_table(shard, columns=["artist", "genre", "style"]).to_pydict()
        name = shard.relative_to(root).as_posix()
        for i, (a, g, s) in enumerate(zip(table["artist"], table["genre"], table["style"])):
            rows.append(
                dict(
                    filename=f"{name}#{i:06d}",
                    path=str(shard),
                    row=i,
                    artist=classes["artist"][a],
                    style=names.style_name(classes["style"][s]),
                    genre=names.genre_name(classes["genre"][g]),
                    year_start=np.nan,
                    year_end=np.nan,
                    release="",
                )
            )
    return Listing("huggingface", _frame(rows), {})


# --- Painter by Numbers ------------------------------------------------------------------------

PBN_CSV = "all_data_info.csv"
PBN_COLUMNS = ("artist", "date", "genre", "style", "in_train", "new_filename")


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1")


def read_painter_by_numbers(root: pathlib.Path) -> Listing:
    csv = root / PBN_CSV
    table = pd.read_csv(csv, dtype={"date": str}, keep_default_na=False, encoding="utf-8")
    missing_columns = [c for c in PBN_COLUMNS if c not in table.columns]
    if missing_columns:
        raise catalog_lib.DataError(f"{csv}: missing column(s) {missing_columns}")
    on_disk, non_images = _disk_files(root, [root / "train", root / "test"])
    table["filename"] = [
        f"{'train' if _truthy(t) else 'test'}/{_nfc(f)}"
        for t, f in zip(table["in_train"], table["new_filename"])
    ]
    duplicated = table["filename"].duplicated()
    listed = table[~duplicated]
    unlabelled = sorted(listed.loc[listed["style"].str.strip() == "", "filename"])
    listed = listed[listed["style"].str.strip() != ""]
    missing = sorted(f for f in listed["filename"] if f not in on_disk)
    listed = listed[listed["filename"].isin(on_disk)]
    rows = []
    for f, artist, style, genre, date in zip(
        listed["filename"], listed["artist"], listed["style"], listed["genre"], listed["date"]
    ):
        years = dates.parse_date(date) or (np.nan, np.nan)
        rows.append(
            dict(
                filename=f,
                path=str(on_disk[f]),
                row=-1,
                artist=_nfc(artist).strip() or UNKNOWN_ARTIST,
                style=names.style_name(style),
                genre=names.genre_name(genre),
                year_start=years[0],
                year_end=years[1],
                release=RELEASE_TRAIN if f.startswith("train/") else RELEASE_TEST,
            )
        )
    skipped = {
        "missing_files": missing,
        "unlisted_files": sorted(str(on_disk[f]) for f in on_disk.keys() - set(table["filename"])),
        "non_image_files": non_images,
        "duplicate_rows": sorted(table.loc[duplicated, "filename"]),
        "unlabelled_rows": unlabelled,
    }
    return Listing("painter_by_numbers", _frame(rows), skipped)


# --- Recognising a layout ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Layout:
    needs: str  # what the folder must hold, for the error that lists every layout
    matches: Callable[[pathlib.Path], bool]
    read: Callable[[pathlib.Path], Listing] | None  # None: Best Artworks' own builder reads it


def _is_best_artworks(root):
    return (root / "artists.csv").is_file()


def _is_artgan(root):
    return _artgan_task_file(root, "Style", "style_class.txt") is not None


def _is_painter_by_numbers(root):
    return (root / PBN_CSV).is_file()


def _is_huggingface(root):
    return bool(_parquet_shards(root))


# data.source -> its layout; `detect` tries them in this order
LAYOUTS = Registry(
    "data.source",
    {
        "best_artworks": Layout("artists.csv and images/ (or resized/)", _is_best_artworks, None),
        "artgan": Layout(
            "Style/style_class.txt, Style/style_train.csv, Style/style_val.csv (or wikiart_csv/) "
            "and one folder of images per style",
            _is_artgan,
            read_artgan,
        ),
        "painter_by_numbers": Layout(
            f"{PBN_CSV}, train/ and test/", _is_painter_by_numbers, read_painter_by_numbers
        ),
        "huggingface": Layout(
            "*.parquet shards (e.g. data/train-*.parquet) with image, artist, genre, style",
            _is_huggingface,
            read_huggingface,
        ),
    },
)


def detect(root, named: str = "") -> str:
    """The layout of the download at `root`: `named` (data.source) when given, checked against the
    files, else the first that the files match; an error listing what each layout needs."""
    root = pathlib.Path(root)
    needs = "; ".join(f"{n}: {layout.needs}" for n, layout in LAYOUTS.items())
    if not root.is_dir():
        raise catalog_lib.DataError(f"{root}: data directory does not exist")
    if named:
        if not LAYOUTS[named].matches(root):
            raise catalog_lib.DataError(
                f"{root}: not a {named} download (data.source); it needs {LAYOUTS[named].needs}"
            )
        return named
    for name, layout in LAYOUTS.items():
        if layout.matches(root):
            return name
    raise catalog_lib.DataError(f"{root}: matches no known layout. Each needs: {needs}")
