"""tf.data input pipeline: from the prepared TFDS dataset to batches laid out for pmap.

Everything runs in-graph (no Python callbacks on the hot path). Batches are dicts of numpy arrays
with a leading [local devices, per-device batch] layout; evaluation batches are padded and carry a
`mask` so every image counts exactly once. Each process reads its own shard (`jax.process_index()`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from sklearn.utils.class_weight import compute_class_weight

from artjax.data import augment, best_artworks, splits, synthetic
from artjax.data import catalog as catalog_lib
from artjax.data import preprocess as pp

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """A run's view of the prepared dataset: its classes and its train/val/test membership."""

    builder: tfds.core.DatasetBuilder
    root: pathlib.Path
    synthetic: bool
    classes: tuple[str, ...]
    val_files: frozenset  # filenames of the run's validation images (from the trainval split)
    counts: dict  # split -> per-class image counts, in class order

    @property
    def class_weights(self) -> np.ndarray:
        """sklearn's 'balanced' weights from the training split: n / (classes * count)."""
        counts = np.asarray(self.counts["train"])
        labels = np.repeat(np.arange(len(counts)), counts)
        return compute_class_weight("balanced", classes=np.arange(len(counts)), y=labels).astype(
            np.float32
        )

    def num_examples(self, split: str) -> int:
        return int(sum(self.counts[split]))


def resolve_root(data_config) -> tuple[pathlib.Path, bool]:
    """The configured download, or the embedded synthetic set when `data.root` is empty."""
    if data_config.root:
        root = pathlib.Path(data_config.root).expanduser()
        return root, synthetic.is_synthetic(root)
    logging.warning("data.root is empty: using the embedded default. %s", synthetic.BANNER)
    return synthetic.ensure(data_config.synthetic_dir), True


def split_metadata(builder, split) -> list[tuple[str, str, str, int]]:
    """(filename, style, artist, group) of every example of a TFDS split, without decoding
    images."""
    ds = builder.as_dataset(
        split=split, decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False
    )
    ds = ds.map(lambda ex: (ex["filename"], ex["style"], ex["artist"], ex["group"]))
    return [(f.decode(), s.decode(), a.decode(), int(g)) for f, s, a, g in ds.as_numpy_iterator()]


def prepare_data(data_config, seed: int) -> PreparedData:
    root, is_synthetic = resolve_root(data_config)
    builder = best_artworks.prepare(
        root,
        data_config.prepared_dir,
        test_fraction=data_config.test_fraction,
        max_hamming=data_config.max_hamming,
        min_correlation=data_config.min_correlation,
    )
    classes = catalog_lib.resolve_classes(data_config.classes, builder.info.metadata["styles"])
    trainval = [
        (f, s, g)
        for f, s, _, g in split_metadata(builder, best_artworks.TRAINVAL_SPLIT)
        if s in classes
    ]
    test = [
        (f, s, g)
        for f, s, _, g in split_metadata(builder, best_artworks.TEST_SPLIT)
        if s in classes
    ]
    files, styles, groups = zip(*trainval)
    val = splits.seeded_val_mask(styles, groups, files, data_config.val_fraction, seed)
    val_files = frozenset(np.asarray(files)[val])

    def count(rows):
        found = [s for _, s in rows]
        return [found.count(c) for c in classes]

    counts = dict(
        train=count([(f, s) for f, s, _ in trainval if f not in val_files]),
        val=count([(f, s) for f, s, _ in trainval if f in val_files]),
        test=count([(f, s) for f, s, _ in test]),
    )
    for split in SPLITS:
        if 0 in counts[split]:
            empty = [c for c, n in zip(classes, counts[split]) if n == 0]
            logging.warning("split %r has no images of class(es) %s", split, empty)
    return PreparedData(builder, root, is_synthetic, classes, val_files, counts)


def split_dataset(data: PreparedData, split: str) -> tf.data.Dataset:
    """Undecoded examples of one of the run's splits, `label` indexing `data.classes`."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    source = best_artworks.TEST_SPLIT if split == "test" else best_artworks.TRAINVAL_SPLIT
    ds = data.builder.as_dataset(
        split=source, decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False
    )
    label_of = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            list(data.classes), list(range(len(data.classes))), tf.string, tf.int32
        ),
        default_value=-1,
    )
    ds = ds.map(
        lambda ex: {
            "image": ex["image"],
            "label": label_of.lookup(ex["style"]),
            "filename": ex["filename"],
        }
    )
    ds = ds.filter(lambda ex: ex["label"] >= 0)
    if split != "test":
        val_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                sorted(data.val_files) or [""],
                [1] * max(1, len(data.val_files)),
                tf.string,
                tf.int32,
            ),
            default_value=0,
        )
        want_val = 1 if split == "val" else 0
        ds = ds.filter(lambda ex: tf.equal(val_table.lookup(ex["filename"]), want_val))
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


def class_sampling_weights(counts, power: float) -> np.ndarray:
    """Each class's share of the drawn examples when oversampling: ∝ count ** power (0: balanced,
    1: as in the data), 0 for classes without images."""
    counts = np.asarray(counts, np.float64)
    weights = np.where(counts > 0, counts**power, 0.0)
    return weights / weights.sum()


def decode_ops(image_size: int):
    return [pp.decode, pp.make_resize(image_size), pp.to_uint8]


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
    ds = split_dataset(data, "train").map(pp.compose(decode_ops(d.image_size)), tf.data.AUTOTUNE)
    if d.cache and _cache_fits(data.num_examples("train"), d.image_size):
        ds = ds.cache()
    if d.oversample_power is not None:
        counts = np.asarray(data.counts["train"])
        weights = class_sampling_weights(counts, d.oversample_power)
        per_class = [
            ds.filter(lambda ex, c=c: ex["label"] == c)
            .repeat()
            .shuffle(d.shuffle_buffer, seed=config.seed + c)
            for c in range(len(counts))
            if counts[c] > 0
        ]
        ds = tf.data.Dataset.sample_from_datasets(
            per_class, weights=list(weights[counts > 0]), seed=config.seed
        )
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
    if d.augment_enabled:  # draw per example, resample per batch
        ds = ds.map(augment.make_sample_augmentation(**d.augment.to_dict()), tf.data.AUTOTUNE)
    ds = ds.map(lambda ex: {k: v for k, v in ex.items() if k not in ("rng", "filename")})
    ds = ds.batch(batch, drop_remainder=True, num_parallel_calls=tf.data.AUTOTUNE)
    ops = [augment.apply_augmentation] if d.augment_enabled else []
    ops += [pp.make_normalize(d.normalization), device_layout(num_devices)]
    ds = ds.map(pp.compose(ops), tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(data: PreparedData, split: str, config, num_devices: int) -> tf.data.Dataset:
    """One pass over a split in padded batches; `mask` is 1 for real images, 0 for padding.
    `filename` (strings, for reports) stays on the host: pass only the other keys to a step."""
    d = config.data
    batch = local_batch_size(config.eval_batch_size, num_devices)
    padded_total = padded_eval_size(data.num_examples(split), batch)
    ds = split_dataset(data, split)
    ds = ds.map(
        pp.compose(decode_ops(d.image_size) + [pp.make_normalize(d.normalization)]),
        tf.data.AUTOTUNE,
    )
    ds = ds.map(
        lambda ex: {
            "image": ex["image"],
            "label": ex["label"],
            "mask": tf.constant(1, tf.int32),
            "filename": ex["filename"],
        }
    )
    shape = (d.image_size, d.image_size, 3)
    pad = tf.data.Dataset.from_tensors(
        {
            "image": tf.zeros(shape, tf.float32),
            "label": tf.constant(0, tf.int32),
            "mask": tf.constant(0, tf.int32),
            "filename": tf.constant(""),
        }
    ).repeat()
    ds = ds.concatenate(pad).take(padded_total)
    ds = ds.batch(batch, drop_remainder=True).map(device_layout(num_devices))
    return ds.prefetch(tf.data.AUTOTUNE)
