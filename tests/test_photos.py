"""Photos from the gallery floor: the simulator (`artjax.data.photos`), the finder
(`artjax.finder`) and the "not a painting" gate (`artjax.gate`), on NumPy and OpenCV alone."""

import cv2
import numpy as np
import pytest
from PIL import Image

from artjax import configs, finder, gate
from artjax.data import not_paintings, photos


def textured_painting(seed: int, height: int = 200, width: int = 160) -> np.ndarray:
    """A painting-like image: a smooth field of colours with brush-scale noise."""
    rng = np.random.default_rng(seed)
    field = cv2.resize(
        rng.uniform(0, 255, (6, 6, 3)).astype(np.float32), (width, height), cv2.INTER_CUBIC
    )
    return np.clip(field + rng.normal(0, 20, field.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def config():
    found = configs.base_config()
    found.photos.width, found.photos.height = 800, 600
    return found


def clean_scene(config):
    """The simulator without light or sensor effects: the photo is the warped scene."""
    p = config.photos
    p.light_gradient = p.colour_cast = p.glare_probability = 0.0
    p.blur_sigma, p.noise_sigma, p.jpeg_quality = (0.0, 0.0), (0.0, 0.0), (100, 100)
    return config


def test_warping_the_photo_back_at_its_corners_recovers_the_painting(config):
    painting = textured_painting(0)
    smooth = lambda image: cv2.GaussianBlur(image.astype(np.float32), (0, 0), 2)[6:-6, 6:-6]

    def back(photo, corners):
        found = cv2.resize(finder.straighten(photo.image, corners, 200), (160, 200), cv2.INTER_AREA)
        return np.abs(smooth(found) - smooth(painting)).mean()

    for seed in range(3):
        photo = photos.photograph(painting, np.random.default_rng(seed), clean_scene(config))
        assert photo.image.shape == (600, 800, 3) and photo.image.dtype == np.uint8
        error = back(photo, photo.corners)
        assert error < 4, (seed, error)  # resampling alone
        # the corners moved by 2% of the painting's width: clearly off
        shifted = photo.corners + np.float32([0.02 * np.ptp(photo.corners[:, 0]), 0])
        assert back(photo, shifted) > 2 * error, seed


def test_the_simulator_follows_its_seed_and_its_scenes(config):
    painting = textured_painting(1)
    first = photos.photograph(painting, np.random.default_rng(7), config)
    again = photos.photograph(painting, np.random.default_rng(7), config)
    other = photos.photograph(painting, np.random.default_rng(8), config)
    assert np.array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.corners, again.corners)
    assert not np.array_equal(first.image, other.image)
    close = photos.scene_config(config, "close")
    assert close.glare_probability == 1.0 and config.photos.glare_probability == 0.5
    shares = []
    for seed in range(6):
        corners = photos.photograph(painting, np.random.default_rng(seed), close).corners
        shares.append((corners[:, 1].max() - corners[:, 1].min()) / 600)
    assert 0.6 < min(shares) and max(shares) <= 0.97  # 65-95% of the height, turned and tilted
    with pytest.raises(ValueError, match="valid scenes are \\['close', 'wall'\\]"):
        photos.scene_config(config, "beach")


def test_photometric_views_keep_the_image_and_change_its_light(config):
    painting = textured_painting(2)
    view = photos.photo_view(painting, np.random.default_rng(0), config)
    assert view.shape == painting.shape and view.dtype == np.uint8
    assert np.array_equal(view, photos.photo_view(painting, np.random.default_rng(0), config))
    # the same picture, moved a little and relit: strongly correlated, not equal
    correlation = np.corrcoef(view.astype(float).ravel(), painting.astype(float).ravel())[0, 1]
    assert 0.5 < correlation < 0.999


@pytest.mark.parametrize("scene", ["wall", "close"])
def test_the_finder_recovers_the_corners_of_simulated_photos(config, scene):
    errors, ious = [], []
    for seed in range(8):
        photo = photos.photograph(
            textured_painting(seed), np.random.default_rng(seed), photos.scene_config(config, scene)
        )
        found = finder.find(photo.image, config.finder)
        assert found.found
        errors.append(finder.corner_error(found.corners, photo.corners))
        ious.append(finder.quad_iou(found.corners, photo.corners))
    # stated error: median corner error under 3% of the diagonal, every outline IoU over 0.8
    assert np.median(errors) < 0.03 and min(ious) > 0.8, (errors, ious)


def test_a_clean_painting_is_the_whole_image(real_data_root, config):
    paths = sorted((real_data_root / "images").glob("*/*.jpg"))[::700][:8]
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        found = finder.find(image, config.finder)
        assert not found.found, path
        np.testing.assert_array_equal(found.corners, finder.whole_image(256, 256))
        looked = finder.painting_bytes(path.read_bytes(), config.finder)
        assert looked.encoded == path.read_bytes()  # passed through to the byte


def test_corners_are_ordered_clockwise_from_the_top_left_and_iou_is_symmetric():
    square = np.float32([[10, 10], [110, 10], [110, 110], [10, 110]])
    shuffled = square[[2, 0, 3, 1]]
    np.testing.assert_array_equal(finder.order_corners(shuffled), square)
    half = np.float32([[10, 10], [60, 10], [60, 110], [10, 110]])
    assert finder.quad_iou(square, half) == pytest.approx(0.5, abs=1e-3)
    assert finder.quad_iou(half, square) == pytest.approx(finder.quad_iou(square, half))
    assert finder.straightened_size(half, 512) == (50, 100)


def test_knn_distances_equal_scikit_learns_cosine_neighbours():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    references, queries = rng.normal(size=(300, 16)), rng.normal(size=(40, 16))
    ours = gate.knn_distance(queries, references, k=5, chunk=16)
    distances, _ = (
        NearestNeighbors(n_neighbors=5, metric="cosine").fit(references).kneighbors(queries)
    )
    np.testing.assert_allclose(ours, distances.mean(1), atol=1e-5)


def test_the_threshold_is_the_stated_percentile_of_held_out_artists_distances(tmp_path):
    rng = np.random.default_rng(1)
    folds = []
    for fold in range(3):
        training = rng.normal(size=(200, 8))
        held = rng.normal(size=(40, 8)) + 0.3 * fold
        folds.append((f"fold_{fold}", held, [f"artist{fold}"] * 40, training))
    fitted = gate.fit_cv(folds, k=5, percentile=95.0)
    pooled = np.concatenate([gate.knn_distance(h, t, 5) for _, h, _, t in folds])
    assert fitted["threshold"] == pytest.approx(np.percentile(pooled, 95))
    assert np.mean(pooled <= fitted["threshold"]) == pytest.approx(0.95, abs=1 / len(pooled))
    assert fitted["flagged"] == pytest.approx(np.mean(pooled > fitted["threshold"]))
    # a run's gate round-trips through gate.npz (references in float16: distances to 1e-3)
    saved = gate.Gate(gate.unit(folds[0][3]), 5, fitted["threshold"], 95.0, "test")
    saved.save(tmp_path)
    loaded = gate.Gate.load(tmp_path)
    np.testing.assert_allclose(
        loaded.distances(folds[0][1]), saved.distances(folds[0][1]), atol=1e-3
    )
    assert loaded.summary() == {**saved.summary(), "threshold": pytest.approx(saved.threshold)}
    with pytest.raises(FileNotFoundError, match="artjax.fit_gate"):
        gate.read_cv(tmp_path)


def test_the_not_paintings_set_is_seeded_and_lists_what_it_could_not_load():
    first, second = not_paintings.procedural(3), not_paintings.procedural(3)
    assert [n for n, _ in first] == [n for n, _ in second]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(first, second))
    found, unavailable = not_paintings.sample_photos()
    names = {n for n, _ in found}
    assert {"skimage:moon", "skimage:chelsea", "sklearn:china.jpg"} <= names | set(unavailable)
    assert all(image.dtype == np.uint8 and image.shape[-1] == 3 for _, image in found)


def test_the_photo_view_op_is_the_same_eagerly_and_in_dataset_map(config):
    import tensorflow as tf

    from artjax.data import preprocess as pp

    op = pp.make_photo_view(config.photos, seed=3)
    painting = textured_painting(4)
    example = {"image": tf.constant(painting), "filename": tf.constant("a/b.jpg")}
    eager = op(example)["image"].numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors(example).map(op)))["image"].numpy()
    np.testing.assert_array_equal(eager, mapped)
    assert eager.shape == painting.shape and not np.array_equal(eager, painting)
    other = op({**example, "filename": tf.constant("a/c.jpg")})["image"].numpy()
    assert not np.array_equal(eager, other)  # each painting its own draw


def test_photo_views_train_the_head_and_are_cached_beside_the_clean_features(
    synthetic_root, tmp_path
):
    from artjax import trainer
    from artjax.data import feature_batches
    from artjax.data import input_pipeline as ip
    from tests.conftest import frozen_resnet_config

    config = frozen_resnet_config(synthetic_root, tmp_path, epochs=1)
    config.freeze.feature_cache = str(tmp_path / "cache")
    config.data.photo_views = 1
    config.photos.width, config.photos.height = 64, 48  # (the views do not use the photo size)
    trainer.train_and_evaluate(config, tmp_path / "run")
    cache = feature_batches.read_cache(
        config.freeze.feature_cache, feature_batches.cache_identity(config)
    )
    data = ip.prepare_data(config.data, config.seed)
    train = sorted(data.members["train"])
    keys = [feature_batches.photo_key(config, f, 0) for f in train]
    assert set(keys) <= set(cache) and not set(keys) & data.members["val"]
    assert len(cache) == len(data.rows) + len(train)  # photo views of training paintings only
    clean, photographed = np.stack([cache[f] for f in train]), np.stack([cache[k] for k in keys])
    assert not np.allclose(clean, photographed)
    # other simulator settings are other keys: the cached views are never mistaken for them
    config.photos.jitter = 0.05
    assert feature_batches.photo_key(config, train[0], 0) != keys[0]
    split = feature_batches.split_features(data, "train", cache)
    config.photos.jitter = 0.03
    doubled = feature_batches.with_photo_views(split, config, cache)
    assert len(doubled["features"]) == 2 * len(split["features"])
    np.testing.assert_array_equal(doubled["label"], np.concatenate([split["label"]] * 2))
