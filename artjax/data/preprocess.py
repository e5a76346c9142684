"""Preprocessing: small pure functions on feature dicts, composed from a Python list.

Each `make_*` returns `fn(features) -> features`, usable eagerly and inside `tf.data.Dataset.map`.
Ops branch only on Python values (dtypes, static shapes, settings), never on a tensor's value:
`compose` traces them without AutoGraph.
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
    # The ops are plain TensorFlow (no Python control flow on tensors), so Dataset.map traces
    # them as they are: AutoGraph's conversion of every op's source costs seconds per pipeline.
    @tf.autograph.experimental.do_not_convert
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


# --- shortcut probes (artjax.evaluation.shortcuts): what a model's accuracy keeps when a part of
# the painting is taken away. Each maps a resized image ([..., S, S, 3], float32 or uint8 in
# [0, 255]) to one of the same shape and dtype; masked pixels take the image's mean colour, so the
# mask adds no new colour or edge statistics of its own beyond its outline.
# The centre square and the outer frame (where signatures and frames sit) each cover a quarter of
# the painting, so their changes compare like for like: the frame is 6.7% of the side wide.
CENTRE_FRACTION = 0.5  # side of the masked centre square
BORDER_FRACTION = (1 - (1 - CENTRE_FRACTION**2) ** 0.5) / 2  # width of the frame, per side
TILES = 4  # tiles per side for the shuffle
TILE_SEED = 0


def _fill_mask(image, inside):
    """`image` with the pixels where `inside` ([S, S] bool) is true set to its mean colour."""
    dtype = image.dtype
    x = tf.cast(image, tf.float32)
    mean = tf.reduce_mean(x, axis=[-3, -2], keepdims=True)
    x = tf.where(inside[..., None], mean, x)
    return tf.cast(tf.round(x), dtype) if dtype == tf.uint8 else x


def _square_mask(size, start, stop):
    """[size, size] bool: true on rows and columns in [start, stop)."""
    index = tf.range(size)
    band = (index >= start) & (index < stop)
    return band[:, None] & band[None, :]


def mask_border(features: Features) -> Features:
    image = features["image"]
    size = tf.shape(image)[-2]
    width = tf.cast(tf.round(tf.cast(size, tf.float32) * BORDER_FRACTION), tf.int32)
    inside = tf.logical_not(_square_mask(size, width, size - width))
    return {**features, "image": _fill_mask(image, inside)}


def mask_centre(features: Features) -> Features:
    image = features["image"]
    size = tf.shape(image)[-2]
    side = tf.cast(tf.round(tf.cast(size, tf.float32) * CENTRE_FRACTION), tf.int32)
    start = (size - side) // 2
    return {**features, "image": _fill_mask(image, _square_mask(size, start, start + side))}


def grey_level(features: Features) -> Features:
    """ITU-R 601 luma in all three channels."""
    image = features["image"]
    luma = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))
    grey = tf.repeat(luma, 3, axis=-1)
    return {
        **features,
        "image": tf.cast(tf.round(grey), image.dtype) if image.dtype == tf.uint8 else grey,
    }


def tile_permutation() -> list[int]:
    """The fixed order of the shuffled tiles: a seeded permutation that moves every tile."""
    import numpy as np

    rng = np.random.default_rng(TILE_SEED)
    while True:
        order = rng.permutation(TILES * TILES)
        if not np.any(order == np.arange(TILES * TILES)):
            return order.tolist()


def shuffle_tiles(features: Features) -> Features:
    """TILES x TILES tiles in `tile_permutation`'s order: composition destroyed, texture kept
    (sides that TILES does not divide keep their last rows and columns in place)."""
    image = features["image"]
    size = image.shape[-2]
    tile = size // TILES
    core = image[..., : tile * TILES, : tile * TILES, :]
    lead = tf.shape(core)[:-3]
    channels = image.shape[-1]
    tiles = tf.reshape(core, tf.concat([lead, [TILES, tile, TILES, tile, channels]], 0))
    rank = len(core.shape)
    # [..., ty, y, tx, x, c] -> [..., ty, tx, y, x, c] -> [..., T*T, y, x, c]
    perm = list(range(rank - 3)) + [rank - 3, rank - 1, rank - 2, rank, rank + 1]
    tiles = tf.transpose(tiles, perm)
    tiles = tf.reshape(tiles, tf.concat([lead, [TILES * TILES, tile, tile, channels]], 0))
    tiles = tf.gather(tiles, tile_permutation(), axis=rank - 3)
    tiles = tf.reshape(tiles, tf.concat([lead, [TILES, TILES, tile, tile, channels]], 0))
    tiles = tf.transpose(tiles, perm)
    shuffled = tf.reshape(tiles, tf.shape(core))
    if tile * TILES != size:
        top = tf.concat([shuffled, image[..., : tile * TILES, tile * TILES :, :]], -2)
        shuffled = tf.concat([top, image[..., tile * TILES :, :, :]], -3)
    return {**features, "image": shuffled}


SHORTCUT_PROBES = Registry(
    "shortcut probe",
    {
        "border_masked": mask_border,
        "centre_masked": mask_centre,
        "grey_level": grey_level,
        "tiles_shuffled": shuffle_tiles,
    },
)


def make_photo_view(photos_config, seed: int) -> Op:
    """Decoded uint8 image -> the same painting as a straightened phone photo of it would show it
    (`artjax.data.photos.photo_view`: corners a little off, uneven light, cast, glare, blur,
    noise, JPEG), drawn from `seed` and the example's filename, so a view is reproducible."""
    import zlib

    import numpy as np

    from artjax.data import photos

    def view(image, filename):
        name = filename.item() if isinstance(filename, np.ndarray) else filename
        rng = np.random.default_rng(
            [seed, zlib.crc32(name if isinstance(name, bytes) else name.encode())]
        )
        return photos.photo_view(image, rng, photos_config)

    def photo_view(features):
        image = tf.numpy_function(view, [features["image"], features["filename"]], tf.uint8)
        image.set_shape(features["image"].shape)
        return {**features, "image": image}

    return photo_view


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
