"""TFDS builder for Kaggle's *Best Artworks of All Time* from a manual download directory.

Preparing reads the catalog (`artjax.catalog`), decodes every image once to validate and fingerprint
it (`artjax.fingerprint`), and writes two splits in TFDS's record format:
  test      the fixed, stratified test split (`artjax.splits.fixed_test_mask`)
  trainval  everything else; each run splits it into train/val from its own seed
Examples carry image (encoded bytes), style (the artist's single genre, "" for a multi-genre
artist), genres (every genre the artist's CSV row lists, comma-separated), artist, filename and
group (duplicate group id, shared by near-duplicate scans). Multi-genre artists' images are prepared
too; the single-label class sets leave them out, the multi-label `genres` set uses them. The fixed
test split is stratified by style, and by the list of genres for multi-genre artists, so adding
artists of other styles leaves each style's test images as they were.

Unreadable files (zero-byte, truncated, not an image) are skipped with one warning listing them and
are recorded in the dataset's metadata with the duplicate groups, so nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pathlib
import shutil

import numpy as np
import tensorflow_datasets as tfds

from artjax.data import catalog as catalog_lib
from artjax.data import fingerprint as fingerprint_lib
from artjax.data import splits

TEST_SPLIT, TRAINVAL_SPLIT = "test", "trainval"


@dataclasses.dataclass
class BestArtworksConfig(tfds.core.BuilderConfig):
    """What a prepared copy depends on besides the files; its name fingerprints all of it."""

    test_fraction: float = 0.1
    max_hamming: int = 10
    min_correlation: float = 0.85


def source_fingerprint(root: pathlib.Path) -> str:
    """Hash of the download's file names and sizes and of artists.csv, to tell downloads apart."""
    digest = hashlib.sha256((root / "artists.csv").read_bytes())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root)}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:12]


def make_config(root, test_fraction, max_hamming, min_correlation) -> BestArtworksConfig:
    params = (
        f"{source_fingerprint(pathlib.Path(root))}-{test_fraction}-{max_hamming}-{min_correlation}"
    )
    name = "src" + hashlib.sha256(params.encode()).hexdigest()[:12]
    return BestArtworksConfig(
        name=name,
        test_fraction=test_fraction,
        max_hamming=max_hamming,
        min_correlation=min_correlation,
    )


class BestArtworks(tfds.core.GeneratorBasedBuilder):
    """Paintings labelled with their artist's (single) genre."""

    # 1.1.0: multi-genre artists' images and the `genres` feature (the unused `label` is gone).
    VERSION = tfds.core.Version("1.1.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download https://www.kaggle.com/datasets/ikarus777/best-artworks-of-all-time and pass the "
        "folder holding artists.csv and images/ (or resized/) as config.data.root."
    )
    BUILDER_CONFIG_CLASS = BestArtworksConfig

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "style": tfds.features.Text(),
                    "genres": tfds.features.Text(),
                    "artist": tfds.features.Text(),
                    "filename": tfds.features.Text(),
                    "group": tfds.features.Scalar(np.int64),
                }
            ),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        root = pathlib.Path(dl_manager.manual_dir)
        catalog = catalog_lib.read_catalog(root, include_multi_genre=True)
        images = catalog.images
        prints, keep, unreadable = [], [], []
        for i, path in enumerate(images["path"]):
            try:
                prints.append(fingerprint_lib.fingerprint(path))
                keep.append(i)
            except ValueError as e:
                unreadable.append(str(e))
        if unreadable:
            logging.warning("%d unreadable image(s) skipped: %s", len(unreadable), unreadable)
        images = images.iloc[keep].reset_index(drop=True)
        if images.empty:
            raise catalog_lib.DataError(f"{root}: no readable images of artists in artists.csv")
        cfg = self.builder_config
        groups = fingerprint_lib.duplicate_groups(prints, cfg.max_hamming, cfg.min_correlation)
        # Stratum: the style, or the list of genres of a multi-genre artist.
        strata = images["style"].where(images["style"] != "", images["genres"])
        test = splits.fixed_test_mask(strata, groups, images["filename"], cfg.test_fraction)

        styles = sorted(s for s in images["style"].unique() if s)
        genres = sorted(
            {g for listed in images["genres"] for g in catalog_lib.listed_genres(listed)}
        )
        sizes = np.bincount(groups, minlength=len(groups))
        self.info.metadata.update(
            source_root=str(root.absolute()),
            test_fraction=cfg.test_fraction,
            max_hamming=cfg.max_hamming,
            min_correlation=cfg.min_correlation,
            styles=styles,
            genres=genres,
            artist_genres={a: list(g) for a, g in catalog.artist_genres.items()},
            duplicate_groups=int((sizes > 1).sum()),
            images_in_duplicate_groups=int(sizes[sizes > 1].sum()),
            unreadable_files=unreadable,
            unmatched_files=list(catalog.unmatched_files),
            non_image_files=list(catalog.non_image_files),
            artists_without_files=list(catalog.artists_without_files),
            multi_genre_artists=list(catalog.multi_genre_artists),
        )
        rows = [
            dict(row, group=int(g), encoded=p.encoded)
            for row, g, p in zip(images.to_dict("records"), groups, prints)
        ]
        return {
            TEST_SPLIT: self._generate_examples([r for r, t in zip(rows, test) if t]),
            TRAINVAL_SPLIT: self._generate_examples([r for r, t in zip(rows, test) if not t]),
        }

    def _generate_examples(self, rows):
        for row in rows:
            yield (
                row["filename"],
                {
                    "image": row["encoded"],
                    "style": row["style"],
                    "genres": row["genres"],
                    "artist": row["artist"],
                    "filename": row["filename"],
                    "group": row["group"],
                },
            )


def prepare(
    root, prepared_dir, test_fraction=0.1, max_hamming=10, min_correlation=0.85
) -> BestArtworks:
    """Prepares (once per download and setting) and returns the builder, ready for `as_dataset`."""
    root = pathlib.Path(root)
    if not (root / "artists.csv").is_file():
        raise catalog_lib.DataError(f"{root}: artists.csv not found (config.data.root)")
    config = make_config(root, test_fraction, max_hamming, min_correlation)
    builder = BestArtworks(data_dir=str(prepared_dir), config=config)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    return builder


@dataclasses.dataclass(frozen=True)
class PreparedCopy:
    """One prepared copy under data.prepared_dir: a download at one builder version."""

    path: pathlib.Path
    source_root: str  # the download it was prepared from ("" when not recorded)
    size: int  # bytes
    stale: str  # why it matches no download's current content; "" when it does


def prepared_copies(prepared_dir, current_roots=()) -> list[PreparedCopy]:
    """Every prepared copy, and whether it still matches its download: the builder version is
    today's and the download (its recorded root, or one of `current_roots`) still has the content
    it was prepared from. Interrupted preparations (TFDS's incomplete.* folders) are stale too."""

    def matches(candidate, meta, config_name):
        params = [
            meta.get(k, d)
            for k, d in (("test_fraction", 0.1), ("max_hamming", 10), ("min_correlation", 0.85))
        ]
        # The copy's name fingerprints its download's files and the split settings.
        return (candidate / "artists.csv").is_file() and (
            make_config(candidate, *params).name == config_name
        )

    base = pathlib.Path(prepared_dir) / "best_artworks"
    return copies_under(base, str(BestArtworks.VERSION), matches, current_roots)


def copies_under(base, version: str, matches, current_roots=()) -> list[PreparedCopy]:
    """`prepared_copies` of one builder: its folder `base`, today's `version`, and
    `matches(download, metadata, config name)`: whether a download has a copy's content."""
    copies = []
    for config_dir in sorted(base.iterdir()) if base.is_dir() else []:
        for path in sorted(config_dir.iterdir()) if config_dir.is_dir() else []:
            if not path.is_dir():
                continue
            meta_path = path / "metadata.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            root = meta.get("source_root", "")
            candidates = [pathlib.Path(r) for r in ([root] if root else []) + list(current_roots)]
            if path.name.startswith("incomplete"):
                stale = "an interrupted preparation"
            elif path.name != version:
                stale = f"builder version {path.name} (today's: {version})"
            elif not candidates:
                stale = "no record of its download"
            elif not any(matches(c, meta, config_dir.name) for c in candidates):
                stale = "its download is gone or its files changed"
            else:
                stale = ""
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            copies.append(PreparedCopy(path, root, size, stale))
    return copies


def clean_prepared(prepared_dir, current_roots=(), copies=None) -> list[PreparedCopy]:
    """Removes the stale prepared copies (`prepared_copies`, or those given); returns them."""
    copies = prepared_copies(prepared_dir, current_roots) if copies is None else copies
    removed = [c for c in copies if c.stale]
    for copy in removed:
        shutil.rmtree(copy.path)
        if not any(copy.path.parent.iterdir()):
            copy.path.parent.rmdir()
    return removed
