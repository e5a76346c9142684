"""TFDS builder for WikiArt from a manual download directory, in any of its layouts
(`artjax.data.wikiart.layouts`), with Best Artworks' guarantees (`artjax.data.best_artworks`):

* every image decoded once, in full, to validate it and take its near-duplicate signature, streamed
  over every core (`decode`); unreadable ones skipped with one warning listing them;
* near-duplicate groups (`group`) never cut by the fixed test split or a run's train/val split;
* the fixed test split (`splits.fixed_test_mask`, by style) and trainval, as Best Artworks';
* every file or row left out listed in the metadata, by reason (`skipped`, `unreadable_files`).

Examples carry image (the file's bytes, or an RGB PNG where TensorFlow cannot decode it), style
(per painting, `names.STYLES` spelling), genres (the style again: a painting's one listed class),
genre (its subject: portrait, landscape, ...; "" unknown), artist, filename, group, release (the
release's own split: "train", "test", or "" where it has none) and year_start / year_end (the
years it was made in, `artjax.data.dates`; NaN unknown).

Beam: `prepare(..., beam_options=...)` (or `tfds build` with --beam_pipeline_options) writes the
examples from Beam workers; the decoding pass runs where the builder runs, on all its cores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from artjax.data import catalog as catalog_lib
from artjax.data import splits
from artjax.data.wikiart import decode, layouts

TEST_SPLIT, TRAINVAL_SPLIT = "test", "trainval"  # as best_artworks'
FILES_PER_TASK = 256  # Beam: files read by one task (a parquet shard is one task)


@dataclasses.dataclass
class WikiArtConfig(tfds.core.BuilderConfig):
    """What a prepared copy depends on besides the files (its name fingerprints all of it), and
    how to prepare it (workers, beam: not in the name)."""

    layout: str = ""
    test_fraction: float = 0.1
    max_hamming: int = 10
    min_correlation: float = 0.85
    workers: int = 0  # decoding processes; 0: every core
    beam: bool = False


def source_fingerprint(root: pathlib.Path) -> str:
    """Hash of the download's file names and sizes, to tell downloads apart."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root)}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:12]


def make_config(
    root, layout, test_fraction=0.1, max_hamming=10, min_correlation=0.85, workers=0, beam=False
) -> WikiArtConfig:
    params = f"{layout}-{source_fingerprint(pathlib.Path(root))}-{test_fraction}-{max_hamming}-"
    params += f"{min_correlation}"
    return WikiArtConfig(
        name=f"{layout}_{hashlib.sha256(params.encode()).hexdigest()[:12]}",
        layout=layout,
        test_fraction=test_fraction,
        max_hamming=max_hamming,
        min_correlation=min_correlation,
        workers=workers,
        beam=beam,
    )


def _encoded_items(paths, rows):
    """Each painting's file path (row -1), or its bytes read from its parquet shard (streamed:
    a shard's rows come together, in ascending order, as layouts list them)."""
    shard, wanted = None, []
    for path, row in zip(paths, rows):
        if row < 0:
            if wanted:
                yield from _shard_images(shard, wanted)
                shard, wanted = None, []
            yield path
        elif path == shard:
            wanted.append(row)
        else:
            if wanted:
                yield from _shard_images(shard, wanted)
            shard, wanted = path, [row]
    if wanted:
        yield from _shard_images(shard, wanted)


def _shard_images(path, wanted: list):
    """The encoded images of a parquet shard's rows `wanted` (ascending), streamed."""
    import pyarrow.parquet as pq

    if list(wanted) != sorted(wanted):
        raise ValueError(f"{path}: rows must be read in ascending order")
    wanted, offset = set(wanted), 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=64, columns=["image"]):
        for i, image in enumerate(batch.column("image").to_pylist()):
            if offset + i in wanted:
                yield (image or {}).get("bytes") or b""
        offset += batch.num_rows


def release_groups_cut(groups, releases) -> list[int]:
    """The duplicate groups that the release's own split cuts (members in its train and test):
    a published split is kept as published, so they are reported, not moved."""
    sides: dict[int, set] = {}
    for g, r in zip(groups, releases):
        sides.setdefault(int(g), set()).add(r)
    return sorted(g for g, s in sides.items() if {"train", "test"} <= s)


class WikiArt(tfds.core.GeneratorBasedBuilder):
    """WikiArt paintings, each labelled with its own style."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download one of WikiArt's distributions (README, 'WikiArt') and pass its folder as "
        "config.data.root: " + "; ".join(f"{n}: {v.needs}" for n, v in layouts.LAYOUTS.items())
    )
    BUILDER_CONFIG_CLASS = WikiArtConfig
    # Named after their layout only, so that `tfds build --config` takes a config at all; artjax
    # builds the fingerprinted config of `make_config` (`tfds_build_command` spells it).
    BUILDER_CONFIGS = [
        WikiArtConfig(name=n, layout=n) for n in ("artgan", "huggingface", "painter_by_numbers")
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "style": tfds.features.Text(),
                    "genres": tfds.features.Text(),
                    "genre": tfds.features.Text(),
                    "artist": tfds.features.Text(),
                    "filename": tfds.features.Text(),
                    "group": tfds.features.Scalar(np.int64),
                    "release": tfds.features.Text(),
                    "year_start": tfds.features.Scalar(np.float32),
                    "year_end": tfds.features.Scalar(np.float32),
                }
            ),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        root = pathlib.Path(dl_manager.manual_dir)
        cfg = self.builder_config
        listing = layouts.LAYOUTS[cfg.layout].read(root)
        images = listing.images
        found = decode.signatures(_encoded_items(images["path"], images["row"]), cfg.workers)
        unreadable = [f"{f}: {s.error}" for f, s in zip(images["filename"], found) if s.error]
        if unreadable:
            logging.warning("%d unreadable image(s) skipped: %s", len(unreadable), unreadable)
        keep = [i for i, s in enumerate(found) if not s.error]
        images = images.iloc[keep].reset_index(drop=True)
        found = [found[i] for i in keep]
        if images.empty:
            raise catalog_lib.DataError(f"{root}: no readable, labelled images")
        groups = decode.duplicate_groups(
            [s.phash for s in found],
            np.stack([s.thumb for s in found]),
            cfg.max_hamming,
            cfg.min_correlation,
        )
        test = splits.fixed_test_mask(
            images["style"], groups, images["filename"], cfg.test_fraction
        )
        cut = release_groups_cut(groups, images["release"])
        sizes = np.bincount(groups, minlength=len(groups))
        artist_styles = images.groupby("artist")["style"].agg(lambda s: sorted(set(s)))
        for reason, files in listing.skipped.items():
            if files:
                logging.warning("%d %s skipped: %s", len(files), reason.replace("_", " "), files)
        self.info.metadata.update(
            source_root=str(root.absolute()),
            layout=cfg.layout,
            test_fraction=cfg.test_fraction,
            max_hamming=cfg.max_hamming,
            min_correlation=cfg.min_correlation,
            styles=sorted(images["style"].unique()),
            genres=sorted(g for g in images["genre"].unique() if g),
            # an artist's "listed" classes: the styles of their paintings
            artist_genres=artist_styles.to_dict(),
            duplicate_groups=int((sizes > 1).sum()),
            images_in_duplicate_groups=int(sizes[sizes > 1].sum()),
            release_groups_cut=[images["filename"][groups == g].tolist() for g in cut],
            dated_images=int(images["year_start"].notna().sum()),
            unreadable_files=unreadable,
            skipped={k: list(v) for k, v in listing.skipped.items()},
        )
        rows = images.assign(group=groups, reencode=[s.reencode for s in found])
        return {
            TEST_SPLIT: self._generate_examples(rows[test]),
            TRAINVAL_SPLIT: self._generate_examples(rows[~test]),
        }

    def _generate_examples(self, rows):
        tasks = _tasks(rows)
        if self.builder_config.beam:
            beam = tfds.core.lazy_imports.apache_beam
            return beam.Create(tasks) | beam.FlatMap(_task_examples)
        return (example for task in tasks for example in _task_examples(task))


def _tasks(rows) -> list[list[dict]]:
    """The rows in units of reading: one parquet shard, or FILES_PER_TASK files."""
    records = rows.to_dict("records")
    by_shard: dict[str, list] = {}
    files = []
    for r in records:
        (by_shard.setdefault(r["path"], []) if r["row"] >= 0 else files).append(r)
    chunks = [files[i : i + FILES_PER_TASK] for i in range(0, len(files), FILES_PER_TASK)]
    return list(by_shard.values()) + chunks


def _task_examples(task: list[dict]):
    items = _encoded_items([r["path"] for r in task], [r["row"] for r in task])
    for r, item in zip(task, items):
        raw = pathlib.Path(item).read_bytes() if isinstance(item, str) else item
        yield (
            r["filename"],
            {
                "image": decode.rgb_png(raw) if r["reencode"] else raw,
                "style": r["style"],
                "genres": r["style"],
                "genre": r["genre"],
                "artist": r["artist"],
                "filename": r["filename"],
                "group": int(r["group"]),
                "release": r["release"],
                "year_start": np.float32(r["year_start"]),
                "year_end": np.float32(r["year_end"]),
            },
        )


def prepared_copies(prepared_dir, current_roots=()) -> list:
    """best_artworks.prepared_copies of the WikiArt copies under `prepared_dir`."""
    from artjax.data import best_artworks

    def matches(candidate, meta, config_name):
        layout = meta.get("layout", "")
        if layout not in layouts.LAYOUTS or not layouts.LAYOUTS[layout].matches(candidate):
            return False
        params = [meta.get(k) for k in ("test_fraction", "max_hamming", "min_correlation")]
        return make_config(candidate, layout, *params).name == config_name

    base = pathlib.Path(prepared_dir) / WikiArt.name
    return best_artworks.copies_under(base, str(WikiArt.VERSION), matches, current_roots)


def tfds_build_command(config: WikiArtConfig, root, prepared_dir, beam_options: str) -> str:
    """The `tfds build` command that prepares `config` with Beam where artjax looks for it."""
    fields = ("name", "layout", "test_fraction", "max_hamming", "min_correlation")
    as_json = json.dumps({**{f: getattr(config, f) for f in fields}, "beam": True})
    return (
        f"tfds build {pathlib.Path(__file__).resolve()} --config='{as_json}' "
        f"--manual_dir={pathlib.Path(root).absolute()} "
        f"--data_dir={pathlib.Path(prepared_dir).absolute()} "
        f"--beam_pipeline_options='{beam_options}'"
    )


def prepare(
    root,
    prepared_dir,
    layout: str,
    test_fraction=0.1,
    max_hamming=10,
    min_correlation=0.85,
    workers=0,
    beam_options=None,
) -> WikiArt:
    """Prepares (once per download and setting) and returns the builder, ready for `as_dataset`.
    `beam_options`: an apache_beam PipelineOptions: the examples are written by that pipeline."""
    config = make_config(
        root, layout, test_fraction, max_hamming, min_correlation, workers, beam_options is not None
    )
    builder = WikiArt(data_dir=str(prepared_dir), config=config)
    download_config = tfds.download.DownloadConfig(manual_dir=str(root), beam_options=beam_options)
    builder.download_and_prepare(download_config=download_config)
    return builder
