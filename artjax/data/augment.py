"""Augmentation: Keras's `ImageDataGenerator.apply_transform` (rotation, shifts, shear, zoom,
horizontal flip, brightness) as pure functions on feature dicts, usable eagerly and in
`Dataset.map`.

One affine resampling per image: the Keras matrices are composed into one projective transform for
`ImageProjectiveTransformV3` (bilinear, 'nearest' fill). The random draws are stateless, seeded by
the example's `rng` feature, so a stream is reproducible.

Fine-tuning's training views (`TRAIN_VIEWS`, `data.train_views`): the Keras augmentation above, or
random crops at about half the painting's sides (`make_random_crop`), like evaluation's five crops
but anywhere inside the painting and at a drawn scale, optionally through the gallery-photo
simulator (`make_photometric`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import tensorflow as tf
from absl import logging

from artjax.data.preprocess import Features, Op, compose
from artjax.registry import Registry


def keras_transform_matrix(theta_deg, tx, ty, shear_deg, zx, zy, flip, height, width):
    """Output->input pixel map of `ImageDataGenerator.apply_transform`, in (x=col, y=row)
    coordinates.

    Keras builds rotation @ shift @ shear @ zoom about the image centre in its own (c0, c1) frame,
    then swaps the axes before `scipy.ndimage.affine_transform`; in (x, y) that swap cancels, so its
    c0 is x (Keras's "tx", drawn from height_shift_range, moves along columns). A horizontal flip
    after the warp becomes x -> width - 1 - x applied first.
    """
    f32 = lambda v: tf.cast(v, tf.float32)
    theta, shear = f32(theta_deg) * (math.pi / 180), f32(shear_deg) * (math.pi / 180)
    one, zero = tf.ones([], tf.float32), tf.zeros([], tf.float32)
    mat = lambda rows: tf.stack([tf.stack(r) for r in rows])
    rotation = mat(
        [
            [tf.cos(theta), -tf.sin(theta), zero],
            [tf.sin(theta), tf.cos(theta), zero],
            [zero, zero, one],
        ]
    )
    shift = mat([[one, zero, f32(tx)], [zero, one, f32(ty)], [zero, zero, one]])
    shear_m = mat([[one, -tf.sin(shear), zero], [zero, tf.cos(shear), zero], [zero, zero, one]])
    zoom = mat([[f32(zx), zero, zero], [zero, f32(zy), zero], [zero, zero, one]])
    o_x, o_y = f32(height) / 2 - 0.5, f32(width) / 2 - 0.5  # Keras: offsets from (h, w) in (c0, c1)
    to_centre = mat([[one, zero, o_x], [zero, one, o_y], [zero, zero, one]])
    from_centre = mat([[one, zero, -o_x], [zero, one, -o_y], [zero, zero, one]])
    m = functools.reduce(tf.linalg.matmul, [to_centre, rotation, shift, shear_m, zoom, from_centre])
    sign = tf.where(tf.cast(flip, tf.bool), -one, one)
    flip_x = mat(
        [
            [sign, zero, tf.where(tf.cast(flip, tf.bool), f32(width) - 1, zero)],
            [zero, one, zero],
            [zero, zero, one],
        ]
    )
    return tf.linalg.matmul(m, flip_x)


def apply_transform(image, matrix):
    """Resamples uint8 or float HxWxC (or BxHxWxC) images through 3x3 (or Bx3x3) output->input (x,
    y)
    matrices: bilinear, edge ('nearest') fill."""
    batched = image.shape.rank == 4
    images = image if batched else image[None]
    matrices = matrix if batched else matrix[None]
    flat = tf.reshape(matrices, [-1, 9])[:, :8] / matrices[:, 2:3, 2]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=flat,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )
    return out if batched else out[0]


def sample_keras_params(
    seed,
    height,
    width,
    *,
    rotation,
    width_shift,
    height_shift,
    shear,
    zoom,
    brightness,
    horizontal_flip,
):
    """Draws one image's parameters with the same distributions as ImageDataGenerator's
    `get_random_transform` (float ranges); `seed` is a stateless [2] seed."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
    uniform = lambda i, lo, hi, shape=(): tf.random.stateless_uniform(shape, seeds[i], lo, hi)
    params = dict(
        theta=uniform(0, -rotation, rotation) if rotation else 0.0,
        tx=uniform(1, -height_shift, height_shift) * tf.cast(height, tf.float32)
        if height_shift
        else 0.0,
        ty=uniform(2, -width_shift, width_shift) * tf.cast(width, tf.float32)
        if width_shift
        else 0.0,
        shear=uniform(3, -shear, shear) if shear else 0.0,
        flip=(uniform(5, 0.0, 1.0) < 0.5) if horizontal_flip else False,
        brightness=uniform(6, brightness[0], brightness[1]) if brightness else 1.0,
    )
    zx_zy = uniform(4, 1.0 - zoom, 1.0 + zoom, (2,)) if zoom else tf.ones([2])
    params.update(zx=zx_zy[0], zy=zx_zy[1])
    return params


def keras_params_to_transform(params, height, width):
    """One image's drawn parameters -> (3x3 transform, brightness factor)."""
    matrix = keras_transform_matrix(
        params["theta"],
        params["tx"],
        params["ty"],
        params["shear"],
        params["zx"],
        params["zy"],
        params["flip"],
        height,
        width,
    )
    return matrix, tf.cast(params["brightness"], tf.float32)


def apply_keras_params(image, params):
    """Applies explicitly given ImageDataGenerator parameters to one image (for parity checks)."""
    matrix, brightness = keras_params_to_transform(params, tf.shape(image)[0], tf.shape(image)[1])
    return apply_augmentation({"image": image, "transform": matrix, "brightness": brightness})[
        "image"
    ]


def make_sample_augmentation(
    *,
    rotation=40.0,
    width_shift=0.2,
    height_shift=0.2,
    shear=0.2,
    zoom=0.2,
    brightness=(0.8, 1.2),
    horizontal_flip=True,
) -> Op:
    """Draws one example's Keras-equivalent augmentation from its `rng` feature (stateless [2] seed)
    and adds it as `transform` (3x3) and `brightness`; `apply_augmentation` applies it. Split in two
    so the resampling can run on whole batches, which is several times faster."""
    brightness = tuple(brightness) if brightness else None

    def sample_augmentation(features):
        height, width = tf.shape(features["image"])[0], tf.shape(features["image"])[1]
        params = sample_keras_params(
            features["rng"],
            height,
            width,
            rotation=rotation,
            width_shift=width_shift,
            height_shift=height_shift,
            shear=shear,
            zoom=zoom,
            brightness=brightness,
            horizontal_flip=horizontal_flip,
        )
        matrix, factor = keras_params_to_transform(params, height, width)
        return {**features, "transform": matrix, "brightness": factor}

    return sample_augmentation


def apply_augmentation(features: Features) -> Features:
    """Resamples `image` through `transform`, then scales by `brightness`; single or batched."""
    # Resampling uint8 moves a quarter of the bytes (faster); Keras quantizes to uint8 for its
    # brightness step too.
    image = apply_transform(features["image"], features["transform"])
    image = tf.cast(image, tf.float32)
    factor = features["brightness"]
    if image.shape.rank == 4:
        factor = tf.reshape(factor, [-1, 1, 1, 1])
    image = tf.clip_by_value(image * factor, 0.0, 255.0)
    rest = {k: v for k, v in features.items() if k not in ("transform", "brightness")}
    return {**rest, "image": image}


def make_augment(**augment_config) -> Op:
    """Sample and apply in one step, for single images (EDA figures, tests)."""
    return compose([make_sample_augmentation(**augment_config), apply_augmentation])


# --- training views for fine-tuning: random crops at about half the sides
# ---------------------------------------------------------------------

CROP_STREAMS = 3  # the crop's scale, its position, the mirror
PHOTO_TAG = 34  # mixed into the photometric simulator's seed, apart from the crop's draws


def random_crop_box(seed, height, width, scale):
    """(top, left, crop height, crop width) of one random crop, from a stateless [2] `seed`: its
    sides are the same fraction of the painting's, drawn uniformly from `scale` = (low, high), and
    its position is uniform over the places where it lies wholly inside the painting."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), CROP_STREAMS)
    fraction = tf.random.stateless_uniform([], seeds[0], float(scale[0]), float(scale[1]))
    size = lambda side: tf.clip_by_value(
        tf.cast(tf.round(tf.cast(side, tf.float32) * fraction), tf.int32), 1, side
    )
    crop_h, crop_w = size(height), size(width)
    corner = tf.random.stateless_uniform([2], seeds[1], 0.0, 1.0)
    top = tf.minimum(
        tf.cast(corner[0] * tf.cast(height - crop_h + 1, tf.float32), tf.int32), height - crop_h
    )
    left = tf.minimum(
        tf.cast(corner[1] * tf.cast(width - crop_w + 1, tf.float32), tf.int32), width - crop_w
    )
    return top, left, crop_h, crop_w


def make_random_crop(size: int, scale, horizontal_flip: bool = True) -> Op:
    """One example's training view from its `rng` feature: a `random_crop_box` of the (cached,
    uint8) painting, resized to `size` as evaluation's crops are (antialiased), mirrored left-right
    with probability 1/2 when `horizontal_flip`; uint8."""
    scale = tuple(scale)
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"data.random_crop.scale {scale}: need 0 < low <= high <= 1")

    def random_crop(features):
        image = features["image"]
        top, left, crop_h, crop_w = random_crop_box(
            features["rng"], tf.shape(image)[0], tf.shape(image)[1], scale
        )
        part = tf.image.crop_to_bounding_box(image, top, left, crop_h, crop_w)
        resized = tf.image.resize(tf.cast(part, tf.float32), [size, size], antialias=True)
        view = tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)
        if horizontal_flip:
            mirror_seed = tf.random.experimental.stateless_split(
                tf.cast(features["rng"], tf.int64), CROP_STREAMS
            )[2]
            mirrored = tf.random.stateless_uniform([], mirror_seed, 0.0, 1.0) < 0.5
            view = tf.where(mirrored, tf.reverse(view, axis=[1]), view)
        return {**features, "image": view}

    return random_crop


@dataclasses.dataclass(frozen=True)
class TrainViews:
    source_size: int  # the side at which training paintings are decoded and cached
    per_example: Op  # drawn from each example's `rng` feature
    per_batch: tuple  # applied to whole batches afterwards


def _keras_views(data_config) -> TrainViews:
    return TrainViews(
        data_config.image_size,
        make_sample_augmentation(**data_config.augment.to_dict()),
        (apply_augmentation,),
    )


def _random_crops(data_config) -> TrainViews:
    c = data_config.random_crop
    if c.source_size < data_config.image_size * c.scale[0]:
        logging.warning(
            "data.random_crop.source_size %d: the smallest crops are upsampled to %d px",
            c.source_size,
            data_config.image_size,
        )
    return TrainViews(
        c.source_size, make_random_crop(data_config.image_size, c.scale, c.horizontal_flip), ()
    )


# data.train_views -> (data config) -> how each training example is drawn (data.augment_enabled)
TRAIN_VIEWS = Registry("data.train_views", {"keras": _keras_views, "random_crops": _random_crops})


def photo_seed(rng) -> list[int]:
    """The gallery-photo simulator's NumPy seed for an example's stateless `rng` ([seed, index])."""
    return [PHOTO_TAG, *(int(v) for v in rng)]


def make_photometric(config) -> Op:
    """`data.photos.photometric` (the gallery-photo simulator, its parameters in
    `config.photos`) on each example's uint8 `image`, in NumPy through `tf.numpy_function`,
    seeded from the example's `rng` (`photo_seed`): the same example always gets the same photo."""
    from artjax.data import photos  # NumPy; imported only where the option is on

    def simulate(image, rng):
        found = photos.photometric(image, np.random.default_rng(photo_seed(rng)), config)
        return np.asarray(found, np.uint8)

    def photometric(features):
        image = tf.cast(features["image"], tf.uint8)
        found = tf.numpy_function(simulate, [image, features["rng"]], tf.uint8, stateful=False)
        found.set_shape(image.shape)
        return {**features, "image": found}

    return photometric
