"""Each preprocessing function eagerly and inside Dataset.map; augmentation parity with Keras."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from artjax.data import augment, catalog
from artjax.data import preprocess as pp


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def _both_ways(op, features):
    """Runs `op` eagerly and inside tf.data.Dataset.map; asserts they agree; returns the result."""
    eager = op({k: tf.constant(v) for k, v in features.items()})
    mapped = next(iter(tf.data.Dataset.from_tensors(features).map(op)))
    for key in eager:
        np.testing.assert_allclose(
            np.asarray(eager[key], np.float64),
            np.asarray(mapped[key], np.float64),
            atol=1e-4,
            err_msg=key,
        )
    return {k: v.numpy() for k, v in eager.items()}


RGB = (np.arange(12 * 10 * 3) % 251).reshape(12, 10, 3).astype(np.uint8)


@pytest.mark.parametrize(
    "mode,fmt",
    [
        ("RGB", "PNG"),
        ("RGBA", "PNG"),
        ("L", "PNG"),
        ("L", "JPEG"),
        ("RGB", "JPEG"),
        ("CMYK", "JPEG"),
    ],
)
def test_decode_gives_rgb(mode, fmt):
    image = Image.fromarray(RGB).convert(mode)
    out = _both_ways(pp.decode, {"image": _encode(image, fmt)})["image"]
    assert out.shape == (12, 10, 3) and out.dtype == np.uint8
    expected = np.asarray(image.convert("RGB"))
    tolerance = 0 if fmt == "PNG" else 20  # JPEG is lossy, CMYK conversion too
    assert np.abs(out.astype(int) - expected).mean() <= max(tolerance, 0.5)


def test_resize_and_uint8_round_trip():
    out = _both_ways(pp.make_resize(6), {"image": np.full((12, 10, 3), 77, np.uint8)})["image"]
    assert out.shape == (6, 6, 3) and np.allclose(out, 77, atol=1e-3)
    assert (
        _both_ways(pp.to_uint8, {"image": np.full((2, 2, 3), 76.6, np.float32)})["image"].max()
        == 77
    )


def test_views_are_the_whole_image_or_its_corner_and_centre_crops_and_their_mirrors():
    image = np.random.default_rng(0).integers(0, 256, (20, 16, 3)).astype(np.uint8)
    resize = lambda x: pp.make_resize(8)({"image": tf.constant(x)})["image"].numpy()
    whole = _both_ways(pp.make_views(8, "whole", 0.5), {"image": image})["image"]
    np.testing.assert_array_equal(whole[0], resize(image))
    both = _both_ways(pp.make_views(8, "whole_mirrored", 0.5), {"image": image})["image"]
    np.testing.assert_allclose(both[1], both[0][:, ::-1], atol=1e-5)
    views = _both_ways(pp.make_views(8, "crops_mirrored", 0.5), {"image": image})["image"]
    assert len(views) == pp.view_count("crops_mirrored") == 10
    crops = [image[:10, :8], image[:10, 8:], image[10:, :8], image[10:, 8:], image[5:15, 4:12]]
    for view, crop in zip(views[:5], crops):
        np.testing.assert_allclose(view, resize(crop), atol=1e-4)
    for view, mirrored in zip(views[:5], views[5:]):
        np.testing.assert_allclose(mirrored, view[:, ::-1], atol=1e-5)
    with pytest.raises(KeyError, match="data.views.*crops_mirrored"):
        pp.make_views(8, "crops_rotated", 0.5)


def test_normalizations():
    pixel = np.array([[[255.0, 128.0, 0.0]]], np.float32)
    unit = _both_ways(pp.make_normalize("unit"), {"image": pixel})["image"]
    np.testing.assert_allclose(unit, [[[1.0, 128 / 255, 0.0]]], atol=1e-6)
    imagenet = _both_ways(pp.make_normalize("imagenet"), {"image": pixel})["image"]
    np.testing.assert_allclose(imagenet[0, 0, 0], (1 - 0.485) / 0.229, atol=1e-5)
    caffe = _both_ways(pp.make_normalize("caffe"), {"image": pixel})["image"]
    np.testing.assert_allclose(caffe[0, 0], [0 - 103.939, 128 - 116.779, 255 - 123.68], atol=1e-4)
    varied = np.random.default_rng(0).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    standard = _both_ways(pp.make_normalize("standardize"), {"image": varied})["image"]
    assert abs(standard.mean()) < 1e-5 and abs(standard.std() - 1) < 1e-3
    with pytest.raises(ValueError, match="normalization 'bogus'"):
        pp.make_normalize("bogus")


def test_augment_is_seeded_and_changes_images():
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3)).astype(np.uint8)
    augmenter = augment.make_augment()
    a = _both_ways(augmenter, {"image": image, "rng": np.array([0, 1], np.int64)})["image"]
    b = _both_ways(augmenter, {"image": image, "rng": np.array([0, 1], np.int64)})["image"]
    c = _both_ways(augmenter, {"image": image, "rng": np.array([0, 2], np.int64)})["image"]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 5
    identity = augment.make_augment(
        rotation=0,
        width_shift=0,
        height_shift=0,
        shear=0,
        zoom=0,
        brightness=None,
        horizontal_flip=False,
    )
    same = _both_ways(identity, {"image": image, "rng": np.array([0, 1], np.int64)})["image"]
    np.testing.assert_allclose(same, image, atol=1e-3)


def test_batched_and_single_augmentation_agree():
    images = np.random.default_rng(1).integers(0, 255, (3, 24, 24, 3)).astype(np.uint8)
    sample = augment.make_sample_augmentation()
    drawn = [
        sample({"image": tf.constant(im), "rng": tf.constant([5, i], tf.int64)})
        for i, im in enumerate(images)
    ]
    single = np.stack([augment.apply_augmentation(d)["image"].numpy() for d in drawn])
    batch = {k: tf.stack([d[k] for d in drawn]) for k in ("image", "transform", "brightness")}
    np.testing.assert_allclose(
        augment.apply_augmentation(batch)["image"].numpy(), single, atol=1e-4
    )


def test_augmentation_matches_keras_image_data_generator(real_data_root):
    """Same parameters -> same pixels as Keras's apply_transform, on real paintings.

    Tolerance: without brightness, 1.5 grey levels (our resampling quantizes to uint8); with
    brightness, 1.5 + 1.2 levels, since Keras truncates to uint8 before PIL's brightness enhancer
    rounds again.
    """
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(fill_mode="nearest")
    paths = sorted(catalog.read_catalog(real_data_root).images["path"])[::500][:4]
    cases = [
        dict(theta=25.0, tx=13.0, ty=-30.0, shear=10.0, zx=0.85, zy=1.1, flip_horizontal=True),
        dict(theta=-37.0, tx=-5.0, ty=7.0, shear=0.2, zx=1.2, zy=0.9, flip_horizontal=False),
    ]
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB").resize((200, 200)), np.float32)
        for case in cases:
            for brightness, tolerance in ((None, 1.5), (1.15, 2.7)):
                params = dict(case, brightness=brightness)
                keras_out = generator.apply_transform(image.copy(), params)
                ours = augment.apply_keras_params(
                    tf.constant(image.astype(np.uint8)),
                    dict(
                        theta=case["theta"],
                        tx=case["tx"],
                        ty=case["ty"],
                        shear=case["shear"],
                        zx=case["zx"],
                        zy=case["zy"],
                        flip=case["flip_horizontal"],
                        brightness=brightness or 1.0,
                    ),
                ).numpy()
                diff = np.abs(keras_out - ours)
                assert diff.max() <= tolerance + 1e-3, (path, params, diff.max())
                assert diff.mean() < 0.8


def test_keras_random_parameter_ranges_match():
    """Our draws cover the same ranges as ImageDataGenerator's for the study's settings."""
    draws = [
        augment.sample_keras_params(
            tf.constant([0, i], tf.int64),
            200,
            200,
            rotation=40.0,
            width_shift=0.2,
            height_shift=0.2,
            shear=0.2,
            zoom=0.2,
            brightness=(0.8, 1.2),
            horizontal_flip=True,
        )
        for i in range(200)
    ]
    get = lambda k: np.array([float(d[k]) for d in draws])
    assert -40 <= get("theta").min() < -30 and 30 < get("theta").max() <= 40
    assert -40 <= get("tx").min() < -30 and 30 < get("ty").max() <= 40
    assert 0.8 <= get("zx").min() < 0.85 and 1.15 < get("zy").max() <= 1.2
    assert 0.3 < get("flip").mean() < 0.7
    assert 0.8 <= get("brightness").min() and get("brightness").max() <= 1.2
