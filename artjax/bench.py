"""Benchmarks (commands, not timed tests). Record their output in BENCHMARKS.md.

  python -m artjax.bench pipeline --config experiments/cnn.py --config.data.root=../shared/data/best_artworks

pipeline: images/s, in one run on the same training files, of
  decode+resize  tf.data decode and resize only (no augmentation, no cache)
  full, cold     the training pipeline's first pass (decode, resize, cache, augment, normalize, batch)
  full, warm     the same pipeline once its cache is filled (every later epoch)
  keras IDG      Keras's ImageDataGenerator.flow_from_dataframe with the same augmentation
"""

from __future__ import annotations

import os
import platform
import time

from absl import app, flags
from ml_collections import config_flags

from artjax import catalog, configs
from artjax import input_pipeline as ip
from artjax import preprocess as pp

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config (experiments/*.py).")
_IMAGES = flags.DEFINE_integer("images", 1600, "Images per measurement.")


def _rate(iterator, images: int, batch: int) -> float:
    start = time.perf_counter()
    for _ in range(images // batch):
        next(iterator)
    return (images // batch) * batch / (time.perf_counter() - start)


def keras_generator(data: ip.PreparedData, config):
    """The study's loader: flow_from_dataframe over the training files, same augmentation."""
    import pandas as pd
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    train_files = {f for f, style, _, _ in ip.split_metadata(data.builder, "trainval")
                   if style in data.classes and f not in data.val_files}
    images = catalog.read_catalog(data.root).images
    images = images[images["filename"].isin(train_files)]
    a = config.data.augment
    generator = ImageDataGenerator(
        rescale=1 / 255, rotation_range=a.rotation, width_shift_range=a.width_shift,
        height_shift_range=a.height_shift, shear_range=a.shear, zoom_range=a.zoom,
        brightness_range=list(a.brightness), horizontal_flip=a.horizontal_flip, fill_mode="nearest")
    return generator.flow_from_dataframe(
        pd.DataFrame({"filename": images["path"], "class": images["style"]}), x_col="filename",
        y_col="class", target_size=(config.data.image_size, config.data.image_size),
        batch_size=config.batch_size, seed=config.seed)


def bench_pipeline(config) -> dict:
    data = ip.prepare_data(config.data, config.seed)
    n, batch = _IMAGES.value, config.batch_size
    decode_only = (ip.split_dataset(data, "train").repeat()
                   .map(pp.compose(ip.decode_ops(config.data.image_size)), -1)
                   .batch(batch).prefetch(-1).as_numpy_iterator())
    rates = {"decode+resize": _rate(decode_only, n, batch)}
    train_images = data.num_examples("train")
    full = ip.train_dataset(data, config, num_devices=1).as_numpy_iterator()
    rates["full, cold (first pass)"] = _rate(full, min(n, train_images), batch)
    _rate(full, train_images, batch)  # finish filling the cache
    rates["full, warm (cached)"] = _rate(full, n, batch)
    rates["keras ImageDataGenerator"] = _rate(iter(keras_generator(data, config)), n, batch)
    return rates


def main(argv):
    if len(argv) != 2 or argv[1] not in ("pipeline",):
        raise app.UsageError("usage: python -m artjax.bench pipeline --config ...")
    config = _CONFIG.value
    rates = bench_pipeline(config)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores; image size {config.data.image_size}, "
          f"batch {config.batch_size}, {_IMAGES.value} images per measurement")
    keras = rates["keras ImageDataGenerator"]
    for name, rate in rates.items():
        print(f"{name:<28}{rate:>9.1f} img/s  ({rate / keras:5.1f}x Keras, "
              f"{rate / rates['decode+resize']:4.2f}x decode-only)")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main, flags_parser=configs.parse_flags)
