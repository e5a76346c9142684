"""Augmentation: Keras's `ImageDataGenerator.apply_transform` (rotation, shifts, shear, zoom,
horizontal flip, brightness) as pure functions on feature dicts, usable eagerly and in
`Dataset.map`.

One affine resampling per image: the Keras matrices are composed into one projective transform for
`ImageProjectiveTransformV3` (bilinear, 'nearest' fill). The random draws are stateless, seeded by
the example's `rng` feature, so a stream is reproducible.
"""

from __future__ import annotations

import functools
import math

import tensorflow as tf

from artjax.data.preprocess import Features, Op, compose


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
