"""Shared defaults for `experiments/*.py`; each experiment overrides what differs.

Every hyperparameter of a run lives in its ConfigDict: nothing is hidden in step functions.
"""

from __future__ import annotations

import ml_collections


def data_config() -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    # Kaggle download (folder with artists.csv and images/ or resized/). Empty: the embedded
    # synthetic set, generated into `synthetic_dir` on first use.
    d.root = ""
    d.synthetic_dir = "data/synthetic"
    d.prepared_dir = "data/prepared"  # TFDS records, one copy per download and split setting
    d.classes = "study"  # "study" (the six), "all" (every single-genre style) or "A,B,C"
    d.image_size = 200
    d.test_fraction = 0.1  # fixed test split per style; changing it changes the test split
    d.val_fraction = 0.1  # of the rest, resampled per run from config.seed (study: ~9% of all)
    d.max_hamming = 10  # near-duplicate detection: perceptual-hash bits ...
    d.min_correlation = 0.85  # ... and thumbnail correlation
    d.normalization = "unit"  # unit | imagenet | caffe | standardize
    d.cache = True  # keep decoded, resized uint8 images in memory
    d.shuffle_buffer = 2048
    # Online minority oversampling: class c drawn with probability ∝ count_c ** power
    # (0.0: balanced, 1.0: natural). None: plain shuffling.
    d.oversample_power = ml_collections.config_dict.placeholder(float)
    d.augment_enabled = True
    # The study's ImageDataGenerator settings (shear in degrees, as Keras takes it).
    d.augment = ml_collections.ConfigDict(dict(
        rotation=40.0, width_shift=0.2, height_shift=0.2, shear=0.2, zoom=0.2,
        brightness=(0.8, 1.2), horizontal_flip=True))
    return d


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 32  # global, over all devices and processes
    config.eval_batch_size = 64
    config.data = data_config()
    return config
