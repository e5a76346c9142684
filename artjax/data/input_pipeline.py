"""tf.data input pipeline: from the prepared TFDS dataset to batches laid out for pmap.

Everything runs in-graph (no Python callbacks on the hot path). Batches are dicts of numpy arrays
with a leading [local devices, per-device batch] layout; evaluation batches are padded and carry a
`mask` so every image counts exactly once. Each process reads its own shard (`jax.process_index()`).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import pathlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils
from sklearn.utils.class_weight import compute_class_weight

from artjax import era
from artjax.data import augment, best_artworks, splits, synthetic
from artjax.data import catalog as catalog_lib
from artjax.data import preprocess as pp
from artjax.data.wikiart import builder as wikiart_builder
from artjax.data.wikiart import layouts
from artjax.registry import Registry

SPLITS = ("train", "val", "test")
CV_BY = ("", "image", "artist")  # data.cv.by: no cross-validation, image folds, artist folds
SPLIT_BY = ("image", "artist")  # data.split_by: how validation is drawn from the training pool


class Row(NamedTuple):
    """One prepared image's metadata (no pixels)."""

    filename: str
    style: str  # the artist's single genre; "" for a multi-genre artist
    artist: str
    group: int  # duplicate group id
    genres: tuple[str, ...]  # every genre the artist's CSV row lists
    source: str  # the TFDS split it is stored in: the fixed test split or trainval
    # WikiArt: the painting's subject genre ("" unknown), the release's own split ("train",
    # "test"; "" without one) and the years it was made in ((): unknown)
    genre: str = ""
    release: str = ""
    years: tuple = ()

    @property
    def stratum(self) -> str:
        return self.style or ",".join(self.genres)


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """A run's view of the prepared dataset: its classes and its train/val/test membership."""

    builder: tfds.core.DatasetBuilder
    root: pathlib.Path
    synthetic: bool
    classes: tuple[str, ...]
    members: dict  # split -> frozenset of the filenames in it
    counts: dict  # split -> per-class image counts, in class order
    multi_label: bool = False  # targets list every genre of the artist (the `genres` class set)
    # data.partial_labels: multi-genre artists train on their listed classes (never held out)
    partial_labels: bool = False
    rows: tuple = ()  # the class set's Rows, every split
    artist_genres: dict = dataclasses.field(default_factory=dict)  # CSV artist -> listed genres
    # data.cv.by == "artist": the artists held out in this fold; classes that only one artist
    # has, which no artist-disjoint split can score
    heldout_artists: tuple = ()
    single_artist_classes: tuple = ()
    fold_count: int = 0  # how many folds data.cv makes (0: no cross-validation)

    @property
    def val_files(self) -> frozenset:
        return self.members["val"]

    @property
    def class_weights(self) -> np.ndarray:
        """sklearn's 'balanced' weights from the training split: n / (classes * count); for a
        multi-label set n counts images and a class's count the images that list it."""
        counts = np.asarray(self.counts["train"])
        if self.multi_label:
            n = len(self.members["train"])
            return np.where(counts > 0, n / (len(counts) * np.maximum(counts, 1)), 0.0).astype(
                np.float32
            )
        labels = np.repeat(np.arange(len(counts)), counts)
        return compute_class_weight("balanced", classes=np.arange(len(counts)), y=labels).astype(
            np.float32
        )

    def num_examples(self, split: str) -> int:
        return len(self.members[split])

    def classes_of(self, row: Row) -> tuple[str, ...]:
        """The run's classes that `row`'s target holds."""
        if self.multi_label or (self.partial_labels and not row.style):
            return tuple(g for g in row.genres if g in self.classes)
        return (row.style,) if row.style in self.classes else ()

    def is_partial(self, row: Row) -> bool:
        """A multi-genre artist's painting in a single-label class set (data.partial_labels)."""
        return self.partial_labels and not self.multi_label and not row.style

    def sources(self, split: str) -> str:
        """The TFDS split(s) holding a split's images, as TFDS's split string."""
        found = {r.source for r in self.rows if r.filename in self.members[split]}
        return "+".join(sorted(found)) or best_artworks.TRAINVAL_SPLIT


def resolve_root(data_config) -> tuple[pathlib.Path, bool]:
    """The configured download, or the embedded synthetic set when `data.root` is empty."""
    if data_config.root:
        root = pathlib.Path(data_config.root).expanduser()
        return root, synthetic.is_synthetic(root)
    logging.warning("data.root is empty: using the embedded default. %s", synthetic.BANNER)
    return synthetic.ensure(data_config.synthetic_dir), True


def split_metadata(builder, split) -> list[Row]:
    """The Row of every example of a TFDS split, without decoding images."""
    ds = builder.as_dataset(
        split=split, decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False
    )
    keys = ["filename", "style", "artist", "group", "genres"]
    extra = [k for k in WIKIART_KEYS if k in builder.info.features]
    ds = ds.map(lambda ex: tuple(ex[k] for k in keys + extra))
    # In batches: one eager iterator step per example costs seconds over a 7k-image download.
    rows = []
    for batch in ds.batch(4096).as_numpy_iterator():
        for f, s, a, g, gs, *more in zip(*batch):
            row = Row(
                f.decode(),
                s.decode(),
                a.decode(),
                int(g),
                catalog_lib.listed_genres(gs.decode()),
                split,
            )
            if more:
                genre, release, start, end = more
                known = bool(np.isfinite(start) and np.isfinite(end))
                row = row._replace(
                    genre=genre.decode(),
                    release=release.decode(),
                    years=(float(start), float(end)) if known else (),
                )
            rows.append(row)
    return rows


WIKIART_KEYS = ("genre", "release", "year_start", "year_end")  # WikiArt's per-painting features


def _class_set(data_config, builder, all_rows) -> tuple[tuple[str, ...], bool]:
    multi_label = data_config.classes in catalog_lib.MULTI_LABEL_SETS
    if multi_label:
        counts = collections.Counter(g for r in all_rows for g in r.genres)
    else:
        counts = collections.Counter(r.style for r in all_rows if r.style)
    classes = catalog_lib.resolve_classes(data_config.classes, counts, data_config.min_class_images)
    return classes, multi_label


def _artist_classes(rows, classes_of) -> dict:
    """Each artist's classes: those of all their paintings (WikiArt labels each painting)."""
    found = collections.defaultdict(set)
    for r in rows:
        found[r.artist].update(classes_of(r))
    return {a: tuple(sorted(c)) for a, c in found.items()}


def _fixed_test(rows, data_config, classes_of) -> set:
    return {r.filename for r in rows if r.source == best_artworks.TEST_SPLIT}


def _release_test(rows, data_config, classes_of) -> set:
    """The release's own test split (ArtGAN's style_val, Painter by Numbers' test/), to compare
    with published figures."""
    if not rows or any(not r.release for r in rows):
        raise ValueError(
            "data.test_split 'release': this download has no release split of its own (only "
            "ArtGAN's and Painter by Numbers' have); use 'fixed' or 'artist'"
        )
    return {r.filename for r in rows if r.release == "test"}


def _artist_test(rows, data_config, classes_of) -> set:
    """A fixed test split of whole artists (`splits.artist_test_artists`)."""
    sizes = collections.Counter(r.artist for r in rows)
    links = collections.defaultdict(set)
    for r in rows:
        links[r.group].add(r.artist)
    held = splits.artist_test_artists(
        _artist_classes(rows, classes_of),
        sizes,
        list(links.values()),
        data_config.test_fraction,
        keep=(layouts.UNKNOWN_ARTIST,),
    )
    return {r.filename for r in rows if r.artist in held}


# data.test_split -> (the class set's rows, data config, classes_of) -> the test split's files
TEST_SPLITS = Registry(
    "data.test_split", {"fixed": _fixed_test, "release": _release_test, "artist": _artist_test}
)


def _train_val(pool, data_config, seed: int, classes_of) -> tuple[set, set]:
    """Splits the training pool into train and validation by image or by artist."""
    if data_config.split_by not in SPLIT_BY:
        raise ValueError(f"data.split_by {data_config.split_by!r} is not one of {SPLIT_BY}")
    if data_config.split_by == "artist":
        held = splits.val_artists(_artist_classes(pool, classes_of), seed)
        val = {r.filename for r in pool if r.artist in held}
    else:
        strata, groups, files = zip(*[(r.stratum, r.group, r.filename) for r in pool])
        mask = splits.seeded_val_mask(strata, groups, files, data_config.val_fraction, seed)
        val = set(np.asarray(files)[mask])
    return {r.filename for r in pool} - val, val


def assign_splits(rows, data_config, seed: int, classes_of) -> tuple[dict, tuple, int]:
    """(split -> filenames, held-out artists, number of folds) of the class set's `rows` under
    data.split_by and data.cv (a cross-validation fold)."""
    cv = data_config.cv
    if cv.by not in CV_BY:
        raise ValueError(f"data.cv.by {cv.by!r} is not one of {CV_BY}")
    test = TEST_SPLITS[data_config.get("test_split", "fixed")](rows, data_config, classes_of)
    trainval = [r for r in rows if r.filename not in test]
    held, count = (), 0
    if cv.by == "artist":
        # Held-out artists: every image of theirs, the fixed test split's included, is the
        # fold's test split; no fold trains on the fixed test split.
        sizes = collections.Counter(r.artist for r in rows)
        folds = splits.artist_folds(_artist_classes(rows, classes_of), sizes, cv.folds, seed)
        if not 0 <= cv.fold < len(folds):
            raise ValueError(f"data.cv.fold {cv.fold} is not in 0..{len(folds) - 1}")
        held, count = tuple(folds[cv.fold]), len(folds)
        test = {r.filename for r in rows if r.artist in held}
        trainval = [r for r in trainval if r.artist not in held]
        train, val = _train_val(trainval, data_config, seed, classes_of)
    elif cv.by == "image":
        if cv.folds < 2:
            raise splits.SplitError(f"{cv.folds} image folds: need at least 2")
        strata, groups, files = zip(*[(r.stratum, r.group, r.filename) for r in trainval])
        fold_of = splits.image_folds(strata, groups, files, cv.folds, seed)
        if not 0 <= cv.fold < cv.folds:
            raise ValueError(f"data.cv.fold {cv.fold} is not in 0..{cv.folds - 1}")
        count = cv.folds
        val = set(np.asarray(files)[fold_of == cv.fold])
        train = set(files) - val
    else:
        train, val = _train_val(trainval, data_config, seed, classes_of)
    members = {"train": frozenset(train), "val": frozenset(val), "test": frozenset(test)}
    return members, held, count


def _prepared_builder(data_config):
    root, is_synthetic = resolve_root(data_config)
    layout = layouts.detect(root, data_config.get("source", ""))
    settings = dict(
        test_fraction=data_config.test_fraction,
        max_hamming=data_config.max_hamming,
        min_correlation=data_config.min_correlation,
    )
    if layout == "best_artworks":
        builder = best_artworks.prepare(root, data_config.prepared_dir, **settings)
    else:
        workers = data_config.get("prepare_workers", 0)
        builder = wikiart_builder.prepare(
            root, data_config.prepared_dir, layout, workers=workers, **settings
        )
    return root, is_synthetic, builder


def prepare_data(data_config, seed: int) -> PreparedData:
    # Process 0 prepares first: processes sharing a filesystem would race to write one copy;
    # the others then find it (on their own disks, prepare theirs): one barrier, before or after.
    waits = jax.process_count() > 1 and jax.process_index() != 0
    if waits:
        multihost_utils.sync_global_devices("artjax: prepared data")
    root, is_synthetic, builder = _prepared_builder(data_config)
    if jax.process_count() > 1 and not waits:
        multihost_utils.sync_global_devices("artjax: prepared data")
    all_rows = split_metadata(builder, best_artworks.TRAINVAL_SPLIT) + split_metadata(
        builder, best_artworks.TEST_SPLIT
    )
    classes, multi_label = _class_set(data_config, builder, all_rows)
    data = PreparedData(
        builder, root, is_synthetic, classes, {}, {}, multi_label, data_config.partial_labels
    )
    rows = tuple(r for r in all_rows if data.classes_of(r))  # TFDS order: trainval, then test
    # Partial labels train only: the splits, folds and held-out scoring are those of the
    # single-genre artists, as without them.
    scored = tuple(r for r in rows if not data.is_partial(r))
    members, held, fold_count = assign_splits(scored, data_config, seed, data.classes_of)
    partial = {r.filename for r in rows if data.is_partial(r)}
    members = {**members, "train": members["train"] | partial}
    counts = {}
    for split in SPLITS:
        found = collections.Counter(
            c for r in rows if r.filename in members[split] for c in data.classes_of(r)
        )
        counts[split] = [found[c] for c in classes]
        empty = [c for c in classes if not found[c]]
        if empty:
            logging.warning("split %r has no images of class(es) %s", split, empty)
    artist_genres = {a: tuple(g) for a, g in builder.info.metadata["artist_genres"].items()}
    lone = splits.single_artist_classes(_artist_classes(scored, data.classes_of))
    return dataclasses.replace(
        data,
        members=members,
        counts=counts,
        rows=rows,
        artist_genres=artist_genres,
        heldout_artists=held,
        single_artist_classes=tuple(lone),
        fold_count=fold_count,
    )


def with_images(data: PreparedData, name: str, files) -> PreparedData:
    """`data` with one more member, `name`: the images `files` of the class set."""
    return dataclasses.replace(data, members={**data.members, name: frozenset(files)})


def artist_periods(data: PreparedData) -> dict[str, tuple[int, int]]:
    """Each artist's active period, from the download's artists.csv (`catalog.active_period`);
    for a download without one (WikiArt), the span of the artist's dated paintings (artists
    without a dated painting have none)."""
    if (data.root / "artists.csv").is_file():
        return catalog_lib.read_active_periods(data.root / "artists.csv")
    spans = collections.defaultdict(list)
    for r in data.rows:
        if r.years:
            spans[r.artist].append(r.years)
    return {a: (min(s for s, _ in ys), max(e for _, e in ys)) for a, ys in spans.items()}


def era_targets(data: PreparedData, filenames, periods: dict) -> np.ndarray:
    """[N, 2] era targets (artjax.era units) of the images `filenames`: the painting's own years
    where the source dates it; else, where the source has artists.csv, its artist's active period
    (`era.targets`); else NaN, which the era loss leaves out (`steps.train_step`)."""
    row_of = {r.filename: r for r in data.rows}
    rows = [row_of[f.decode() if isinstance(f, bytes) else f] for f in filenames]
    by_artist = (data.root / "artists.csv").is_file()
    found = np.full((len(rows), 2), np.nan, np.float32)
    for i, r in enumerate(rows):
        if r.years:
            found[i] = era.from_years(r.years)
        elif by_artist:
            found[i] = era.targets([r.artist], periods)[0]
    return found


def training_style_years(data: PreparedData) -> tuple[float, ...]:
    """Each class's place in time (`catalog.style_years`) in `artjax.era` units, from the artists
    of the training split alone: a held-out artist's period never places a style."""
    train = data.members["train"]
    genres = {r.artist: r.genres for r in data.rows if r.filename in train}
    years = catalog_lib.style_years(data.classes, genres, artist_periods(data))
    return tuple(float(era.from_years(years[c])) for c in data.classes)


def artists_of(data: PreparedData, filenames) -> list[str]:
    artist_of = {r.filename: r.artist for r in data.rows}
    return [artist_of[f] for f in filenames]


def numpy_labels(data: PreparedData, rows) -> np.ndarray:
    """The labels of `rows` as split_dataset gives them: class indices, or multi-hot targets (a
    multi-label set; rows with partial labels, whose listed classes are the target)."""
    index = {c: i for i, c in enumerate(data.classes)}
    if not data.multi_label and not any(data.is_partial(r) for r in rows):
        return np.array([index[r.style] for r in rows], np.int32)
    found = np.zeros((len(rows), len(data.classes)), np.float32)
    for i, r in enumerate(rows):
        found[i, [index[c] for c in data.classes_of(r)]] = 1.0
    return found


def _lookup(keys, values, default, value_dtype) -> tf.lookup.StaticHashTable:
    init = tf.lookup.KeyValueTensorInitializer(list(keys), list(values), tf.string, value_dtype)
    return tf.lookup.StaticHashTable(init, default_value=default)


def _of_row(rows, values) -> Callable:
    """ex -> `values[i]` (float32) of the row i among `rows` whose filename is ex's."""
    table = tf.constant(values, tf.float32)
    index = _lookup([r.filename for r in rows], range(len(rows)), -1, tf.int32)
    return lambda ex: tf.gather(table, index.lookup(ex["filename"]))


def split_dataset(data: PreparedData, split: str) -> tf.data.Dataset:
    """Undecoded examples of one of the run's splits (or of another file set in `data.members`):
    `label` indexes `data.classes`, or is the multi-hot vector over them for a multi-label set
    or a split with partial labels (`numpy_labels`)."""
    if split not in data.members:
        raise ValueError(f"split {split!r} is not one of {tuple(data.members)}")
    ds = data.builder.as_dataset(
        split=data.sources(split),
        decoders={"image": tfds.decode.SkipDecoding()},
        shuffle_files=False,
    )
    files = sorted(data.members[split]) or [""]
    member = _lookup(files, [1] * len(files), 0, tf.int32)
    ds = ds.filter(lambda ex: tf.equal(member.lookup(ex["filename"]), 1))
    index_of = _lookup(data.classes, range(len(data.classes)), -1, tf.int32)
    rows = [r for r in data.rows if r.filename in data.members[split]]
    if not data.multi_label and any(data.is_partial(r) for r in rows):
        # partial labels (training only): every row's multi-hot target, as numpy_labels gives it
        label = _of_row(rows, numpy_labels(data, rows))
    elif data.multi_label:
        num_classes = len(data.classes)

        def label(ex):
            ids = index_of.lookup(tf.strings.split(ex["genres"], ","))
            return tf.reduce_max(tf.one_hot(ids, num_classes, dtype=tf.float32), axis=0)
    else:

        def label(ex):
            return index_of.lookup(ex["style"])

    ds = ds.map(lambda ex: {"image": ex["image"], "label": label(ex), "filename": ex["filename"]})
    return ds.shard(jax.process_count(), jax.process_index())


def device_layout(num_devices: int):
    """Reshapes every array of a batch from [B, ...] to [num_devices, B // num_devices, ...]."""

    def layout(batch):
        return {
            k: tf.reshape(v, tf.concat([[num_devices, -1], tf.shape(v)[1:]], 0))
            for k, v in batch.items()
        }

    return layout


def local_batch_size(global_batch: int, num_devices: int) -> int:
    processes = jax.process_count()
    if global_batch % (processes * num_devices):
        raise ValueError(
            f"batch size {global_batch} does not divide over {processes} process(es) x "
            f"{num_devices} local device(s); use a multiple of {processes * num_devices}"
        )
    return global_batch // processes


def padded_eval_size(split_size: int, local_batch: int) -> int:
    """Examples (real + padding) that each process runs in one pass over a split of `split_size`
    images: every process runs the same number of batches (collectives), so all pad to the largest
    shard, up to whole batches."""
    per_process = -(-split_size // jax.process_count())
    return -(-per_process // local_batch) * local_batch


def training_draw(data: PreparedData, config, filenames) -> np.ndarray | None:
    """The training draw's probability for each of the training images `filenames` (in their
    order), from `data.oversample_power` and `data.artist_balanced`; None: plain shuffling."""
    d = config.data
    if data.multi_label and d.oversample_power is not None:
        raise ValueError("data.oversample_power draws by class: not for a multi-label class set")
    row_of = {r.filename: r for r in data.rows}
    rows = [row_of[f.decode() if isinstance(f, bytes) else f] for f in filenames]
    return example_sampling_probabilities(
        rows, data.classes_of, d.oversample_power, d.artist_balanced
    )


def example_sampling_probabilities(
    rows, classes_of, power: float | None, artist_balanced: bool
) -> np.ndarray | None:
    """Each of `rows`' probability of being drawn: a class gets a share ∝ its image count ** power
    (None: 1, as in the data), shared among its artists equally (`artist_balanced`) or by their
    image counts, and an artist's share equally among their images. A multi-label row's class is
    its set of listed classes. None when the draw is plain shuffling."""
    if power is None and not artist_balanced:
        return None
    keys = [tuple(classes_of(r)) for r in rows]
    class_count = collections.Counter(keys)
    artist_count = collections.Counter(zip(keys, (r.artist for r in rows)))
    artists_in = collections.Counter(key for key, _ in artist_count)
    share = {k: n ** (1.0 if power is None else power) for k, n in class_count.items()}
    total = sum(share.values())
    probs = np.empty(len(rows))
    for i, (key, row) in enumerate(zip(keys, rows)):
        images_of_artist = artist_count[key, row.artist]
        if artist_balanced:
            probs[i] = share[key] / total / artists_in[key] / images_of_artist
        else:
            probs[i] = share[key] / total / class_count[key]
    return probs / probs.sum()


def decode_ops(image_size: int):
    return [pp.decode, pp.make_resize(image_size), pp.to_uint8]


def eval_ops(data_config, probe: str = "", photo=None) -> list:
    """Encoded image -> the model's evaluation input: one normalized image [S, S, 3], or its
    `data.views` [V, S, S, 3] (the model's logits are averaged over them). `probe`: a shortcut
    probe (preprocess.SHORTCUT_PROBES) applied to each resized view. `photo`: (photos config,
    seed): the painting as a straightened photo shows it first (preprocess.make_photo_view)."""
    d = data_config
    photographed = [pp.make_photo_view(*photo)] if photo is not None else []
    if d.views == "whole":
        resized = [pp.make_resize(d.image_size), pp.to_uint8]
    else:
        resized = [pp.make_views(d.image_size, d.views, d.crop_fraction), pp.to_uint8]
    probed = [pp.SHORTCUT_PROBES[probe]] if probe else []
    return [pp.decode, *photographed, *resized, *probed, pp.make_normalize(d.normalization)]


def eval_image_shape(data_config) -> tuple:
    size = (data_config.image_size, data_config.image_size, 3)
    views = pp.view_count(data_config.views)
    return size if data_config.views == "whole" else (views, *size)


def _cache_fits(images: int, size: int) -> bool:
    """Caches decoded uint8 images only if they take under half of the memory available now."""
    need = images * size * size * 3
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > available / 2:
        logging.warning(
            "not caching %d decoded images (%.1f GB; %.1f GB available): decoding every epoch",
            images,
            need / 1e9,
            available / 1e9,
        )
        return False
    return True


def train_dataset(
    data: PreparedData, config, num_devices: int, start_step: int = 0
) -> tf.data.Dataset:
    """Endless shuffled, augmented training batches; `start_step` resumes the same stream."""
    d = config.data
    batch = local_batch_size(config.batch_size, num_devices)
    views = augment.TRAIN_VIEWS[d.train_views](d) if d.augment_enabled else None
    source = views.source_size if views else d.image_size
    ds = split_dataset(data, "train").map(pp.compose(decode_ops(source)), tf.data.AUTOTUNE)
    if d.cache and _cache_fits(data.num_examples("train"), source):
        ds = ds.cache()
    if d.oversample_power is not None or d.artist_balanced:
        ds = drawn_by_artist(ds, data, config)
    else:
        ds = ds.shuffle(d.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True).repeat()
    ds = ds.enumerate().skip(start_step * batch)  # skipping before augmenting keeps resume cheap
    process, processes = jax.process_index(), jax.process_count()
    ds = ds.map(
        lambda i, ex: {
            **ex,
            "rng": tf.stack([tf.cast(config.seed, tf.int64), i * processes + process]),
        }
    )
    if config.model.era_head:  # the artist's active period, the era head's target
        ds = ds.map(era_targets_op(data, "train"))
    if views:  # drawn per example (Keras: resampled per batch, below)
        ds = ds.map(views.per_example, tf.data.AUTOTUNE)
    if d.augment_enabled and d.photometric_augment:
        ds = ds.map(augment.make_photometric(config), tf.data.AUTOTUNE)
    ds = ds.map(lambda ex: {k: v for k, v in ex.items() if k not in ("rng", "filename")})
    ds = ds.batch(batch, drop_remainder=True, num_parallel_calls=tf.data.AUTOTUNE)
    ops = list(views.per_batch) if views else []
    ops += [pp.make_normalize(d.normalization), device_layout(num_devices)]
    ds = ds.map(pp.compose(ops), tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def era_targets_op(data: PreparedData, split: str):
    """Adds `era`: each example's artist's active period (`era.targets`, [2] in era units), by
    its filename."""
    rows = [r for r in data.rows if r.filename in data.members[split]]
    era_of = _of_row(rows, era.targets([r.artist for r in rows], artist_periods(data)))
    return lambda ex: {**ex, "era": era_of(ex)}


def drawn_by_artist(ds: tf.data.Dataset, data: PreparedData, config) -> tf.data.Dataset:
    """Endless draws at `example_sampling_probabilities`: one shuffled stream per artist (each
    artist's images are equally likely), mixed at the artists' shares."""
    rows = [r for r in data.rows if r.filename in data.members["train"]]
    probs = training_draw(data, config, [r.filename for r in rows])
    artists = sorted({r.artist for r in rows})
    artist_of = _lookup(
        [r.filename for r in rows], [artists.index(r.artist) for r in rows], -1, tf.int32
    )
    shares = np.zeros(len(artists))
    np.add.at(shares, [artists.index(r.artist) for r in rows], probs)
    streams = [
        ds.filter(lambda ex, a=a: artist_of.lookup(ex["filename"]) == a)
        .repeat()
        .shuffle(config.data.shuffle_buffer, seed=config.seed + a)
        for a in range(len(artists))
    ]
    return tf.data.Dataset.sample_from_datasets(streams, weights=list(shares), seed=config.seed)


def eval_dataset(
    data: PreparedData, split: str, config, num_devices: int, probe: str = "", photo=None
) -> tf.data.Dataset:
    """One pass over a split in padded batches; `mask` is 1 for real images, 0 for padding.
    `filename` (strings, for reports) stays on the host: pass only the other keys to a step.
    `probe`: a shortcut probe applied to every image; `photo`: photo views (eval_ops)."""
    d = config.data
    batch = local_batch_size(config.eval_batch_size, num_devices)
    padded_total = padded_eval_size(data.num_examples(split), batch)
    ds = split_dataset(data, split).map(pp.compose(eval_ops(d, probe, photo)), tf.data.AUTOTUNE)
    ds = ds.map(
        lambda ex: {
            "image": ex["image"],
            "label": ex["label"],
            "mask": tf.constant(1, tf.int32),
            "filename": ex["filename"],
        }
    )
    shape = eval_image_shape(d)
    pad = tf.data.Dataset.from_tensors(
        {
            "image": tf.zeros(shape, tf.float32),
            "label": tf.zeros([len(data.classes)])
            if data.multi_label
            else tf.constant(0, tf.int32),
            "mask": tf.constant(0, tf.int32),
            "filename": tf.constant(""),
        }
    ).repeat()
    ds = ds.concatenate(pad).take(padded_total)
    ds = ds.batch(batch, drop_remainder=True).map(device_layout(num_devices))
    return ds.prefetch(tf.data.AUTOTUNE)
