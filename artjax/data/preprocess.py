"""Preprocessing: small pure functions on feature dicts, composed from a Python list.

Each `make_*` returns `fn(features) -> features`, usable eagerly and inside `tf.data.Dataset.map`.
Images are float32 in [0, 255] from `resize` until `normalize`. Augmentation is
`artjax.data.augment`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

from artjax.registry import Registry

Features = dict
Op = Callable[[Features], Features]

IMAGENET_MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications.imagenet_utils, mode="caffe"
LITE_MEAN, LITE_STD = 127.0, 128.0  # TF's efficientnet/lite builder (MEAN_RGB, STDDEV_RGB)


def compose(ops: Sequence[Op]) -> Op:
    def apply(features):
        for op in ops:
            features = op(features)
        return features

    return apply


def decode(features: Features) -> Features:
    """JPEG or PNG bytes -> uint8 RGB (grayscale expanded, CMYK converted, alpha dropped)."""
    image = tf.io.decode_image(features["image"], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return {**features, "image": image}


def make_resize(size: int) -> Op:
    def resize(features):
        image = tf.image.resize(
            tf.cast(features["image"], tf.float32), [size, size], antialias=True
        )
        return {**features, "image": tf.clip_by_value(image, 0.0, 255.0)}

    return resize


def to_uint8(features: Features) -> Features:
    """Rounds to uint8: a quarter of the memory for cached images."""
    return {**features, "image": tf.cast(tf.round(features["image"]), tf.uint8)}


# data.normalization -> float32 [0, 255] RGB image -> model input (ported weights fix which one).
NORMALIZATIONS = Registry(
    "data.normalization",
    {
        "unit": lambda image: image / 255.0,
        "imagenet": lambda image: (image - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB,
        "caffe": lambda image: image[..., ::-1] - CAFFE_MEAN_BGR,
        "lite": lambda image: (image - LITE_MEAN) / LITE_STD,
        "standardize": tf.image.per_image_standardization,
    },
)


def make_normalize(mode: str) -> Op:
    scale = NORMALIZATIONS[mode]

    def normalize(features):
        return {**features, "image": scale(tf.cast(features["image"], tf.float32))}

    return normalize
