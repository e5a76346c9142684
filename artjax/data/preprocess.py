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


def _corner_and_centre_crops(image, fraction: float) -> list:
    """The four corner crops and the centre crop, each `fraction` of the image's sides."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    crop_h = tf.cast(tf.cast(height, tf.float32) * fraction, tf.int32)
    crop_w = tf.cast(tf.cast(width, tf.float32) * fraction, tf.int32)
    tops = [0, 0, height - crop_h, height - crop_h, (height - crop_h) // 2]
    lefts = [0, width - crop_w, 0, width - crop_w, (width - crop_w) // 2]
    return [
        tf.image.crop_to_bounding_box(image, top, left, crop_h, crop_w)
        for top, left in zip(tops, lefts)
    ]


# data.views -> which views of a painting a model sees at evaluation (its logits are averaged
# over them), and a frozen backbone's cached features are computed for (the head trains on each):
# (crops: the four corners and the centre at data.crop_fraction of the sides, mirrored: and each
# view's left-right mirror image).
VIEWS = Registry(
    "data.views",
    {
        "whole": dict(crops=False, mirrored=False),
        "whole_mirrored": dict(crops=False, mirrored=True),
        "crops": dict(crops=True, mirrored=False),
        "crops_mirrored": dict(crops=True, mirrored=True),
    },
)


def view_count(views: str) -> int:
    found = VIEWS[views]
    return (5 if found["crops"] else 1) * (2 if found["mirrored"] else 1)


def make_views(size: int, views: str, crop_fraction: float) -> Op:
    """Decoded image -> [V, size, size, 3] float32 in [0, 255]: the views `views` names, each
    resized as `make_resize` does (the "whole" view equals it). The order: crops (or the whole
    image), then their mirror images."""
    found = VIEWS[views]
    resize = make_resize(size)

    def make(features):
        image = features["image"]
        parts = _corner_and_centre_crops(image, crop_fraction) if found["crops"] else [image]
        stacked = tf.stack([resize({"image": part})["image"] for part in parts])
        if found["mirrored"]:
            stacked = tf.concat([stacked, tf.reverse(stacked, axis=[2])], 0)
        return {**features, "image": stacked}

    return make


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
