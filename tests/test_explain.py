"""Explanations (Grad-CAM, integrated gradients, `artjax.explain`) and the shortcut probes
(`artjax.evaluate --shortcuts`)."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from artjax import evaluation, models
from artjax.data import input_pipeline as ip
from artjax.data import preprocess as pp
from artjax.serving import attribution, inference
from tests.conftest import make_config, run_command

# Tests on the session's finished run share its xdist group (one worker builds it).
pytestmark = pytest.mark.xdist_group("finished_run")


class RedDetector(nn.Module):
    """Class 0's logit is the mean of a 1x1 "red" channel, class 1's of a "blue" one: on a blue
    painting with one red square, class 0 depends on that square alone."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        maps = nn.relu(nn.Conv(2, (1, 1), use_bias=False, name="detector")(x))
        return maps.mean(axis=(1, 2))


def _red_detector():
    kernel = np.array([[1.0, -1.0], [0.0, 0.0], [-1.0, 1.0]], np.float32)  # RGB -> (red, blue)
    return RedDetector(), {"params": {"detector": {"kernel": jnp.asarray(kernel[None, None])}}}


def test_grad_cam_highlights_the_region_the_logit_depends_on():
    model, variables = _red_detector()
    images = np.zeros((2, 32, 32, 3), np.float32)
    images[..., 2] = 1.0  # blue
    images[0, 4:12, 20:28] = (1.0, 0.0, 0.0)  # a red square, top right
    images[1, 18:30, 2:14] = (1.0, 0.0, 0.0)  # bottom left
    layer = attribution.last_feature_map(model, variables, (32, 32, 3))
    assert layer == "detector"
    cam = np.asarray(attribution.grad_cam_fn(model, layer)(variables, images, jnp.array([0, 0])))
    for image, found in zip(images, cam):
        red = image[..., 0] == 1.0
        assert found[red].min() > 0.95 and found[~red].max() < 0.05
    # the "blue" class looks at everything but the square
    blue = np.asarray(attribution.grad_cam_fn(model, layer)(variables, images, jnp.array([1, 1])))
    assert blue[0][images[0, ..., 0] == 1.0].max() < 0.05 and blue[0][0, 0] > 0.95


def test_the_last_feature_map_of_each_architecture():
    config = make_config("", "")
    expected = {
        "cnn": ("conv4", {}),
        "resnet": ("stage2_block1", {"stage_sizes": (1, 1), "width": 4}),
        "efficientnet_lite": ("top_bn", {}),
    }
    for name, (layer, extra) in expected.items():
        config.model.name = name
        config.model.update(extra)
        model = models.create_model(config.model, 3)
        shapes = models.abstract_variables(model, 64)
        variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        assert attribution.last_feature_map(model, variables, (64, 64, 3)) == layer, name


def test_integrated_gradients_are_complete():
    # Attributions sum to logit(x) - logit(baseline), up to the midpoint rule's error.
    config = make_config("", "")
    config.model.name = "resnet"
    config.model.update({"stage_sizes": (1, 1), "width": 4})
    model = models.create_model(config.model, 3)
    variables = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 32, 32, 3)))
    images = 2.0 * jax.random.normal(jax.random.PRNGKey(2), (2, 32, 32, 3))
    baselines = jnp.zeros_like(images)
    targets = jnp.array([0, 2])
    logits = model.apply(variables, images)
    base = model.apply(variables, baselines)
    expected = np.asarray(logits[jnp.arange(2), targets] - base[jnp.arange(2), targets])
    ig = attribution.integrated_gradients_fn(model, steps=32)
    found = np.asarray(ig(variables, images, baselines, targets)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(found, expected, rtol=0.02, atol=0.02 * np.abs(expected).max())
    assert np.abs(expected).min() > 1e-3  # not trivially zero


def test_the_explain_command_writes_a_heatmap_per_style(finished_run, synthetic_root, tmp_path):
    _, run = finished_run
    image = sorted((synthetic_root / "images").rglob("*.jpg"))[0]
    result = run_command(
        ["artjax.explain", f"--workdir={run}", "--top_k=2"]
        + [f"--out={tmp_path}", str(image), str(tmp_path / "missing.jpg")],
        cwd=tmp_path,
        timeout=300,
    )
    # the readable painting is explained; the missing one is an error naming it (exit 1)
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(tmp_path / "missing.jpg") in errors[0]
    figure = tmp_path / f"{image.stem}_gradcam.png"
    assert figure.stat().st_size > 5000
    ranked = inference.Predictor(run).describe_file(image, 2).ranked
    styles = ", ".join(f"{style} {p:.3f}" for style, p in ranked)
    assert f"{image}: {styles} -> {figure}" in result.stdout


def test_integrated_gradients_of_a_run_explain_the_predicted_styles(finished_run, synthetic_root):
    _, run = finished_run
    paths = sorted((synthetic_root / "images").rglob("*.jpg"))[:3]
    explainer = attribution.Explainer(run, method="integrated_gradients", steps=4, batch_size=2)
    found, errors = explainer.explain_files(paths, top_k=2)
    assert errors == []
    predictor = inference.Predictor(run)
    for path, explanation in zip(paths, found):
        expected = predictor.describe_file(path, 2).ranked
        assert [style for style, _ in explanation.ranked] == [style for style, _ in expected]
        np.testing.assert_allclose(
            [p for _, p in explanation.ranked], [p for _, p in expected], rtol=1e-5
        )
        # the top style has evidence somewhere; two styles have different evidence
        assert explanation.maps[0].max() == pytest.approx(1.0)
        assert not np.allclose(explanation.maps[0], explanation.maps[1])


# --- shortcut probes


def _tile_image(size=12, tiles=4):
    """Every pixel holds its tile's index (in all channels)."""
    tile = size // tiles
    index = np.arange(size) // tile
    return np.repeat((index[:, None] * tiles + index[None, :])[..., None], 3, -1).astype(np.uint8)


def _probe_eagerly_and_in_a_dataset(probe, image):
    eager = np.asarray(probe({"image": tf.constant(image)})["image"])
    ds = tf.data.Dataset.from_tensors({"image": tf.constant(image)}).map(probe)
    mapped = next(iter(ds.as_numpy_iterator()))["image"]
    np.testing.assert_array_equal(eager, mapped)
    return eager


def test_border_and_centre_masks_take_the_mean_colour_and_keep_the_rest():
    rng = np.random.default_rng(0)
    size = 30
    image = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    mean = np.round(image.reshape(-1, 3).mean(0))
    border = _probe_eagerly_and_in_a_dataset(pp.mask_border, image)
    band = 2  # 6.7% of 30
    inner = (slice(band, size - band), slice(band, size - band))
    np.testing.assert_array_equal(border[inner], image[inner])
    outer = np.ones((size, size), bool)
    outer[inner] = False
    assert (border[outer] == mean).all()
    centre = _probe_eagerly_and_in_a_dataset(pp.mask_centre, image)
    middle = (slice(7, 22), slice(7, 22))  # a square of half the side (15 of 30)
    assert (centre[middle] == mean).all()
    outside = np.ones((size, size), bool)
    outside[middle] = False
    np.testing.assert_array_equal(centre[outside], image[outside])
    # both take a quarter of the painting, within a row of pixels
    assert abs(outer.mean() - 0.25) < 2 / size and abs((~outside).mean() - 0.25) < 2 / size


def test_grey_level_is_the_luma_in_every_channel():
    image = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], np.uint8)
    grey = _probe_eagerly_and_in_a_dataset(pp.grey_level, image)
    luma = np.round(image @ np.array([0.2989, 0.5870, 0.1140]))
    np.testing.assert_array_equal(grey, np.repeat(luma[..., None], 3, -1))


def test_shuffled_tiles_move_every_tile_whole_and_keep_what_does_not_divide():
    image = _tile_image(12)
    shuffled = _probe_eagerly_and_in_a_dataset(pp.shuffle_tiles, image)
    order = pp.tile_permutation()
    assert sorted(order) == list(range(16)) and all(o != i for i, o in enumerate(order))
    for position, source in enumerate(order):
        row, col = divmod(position, 4)
        assert (shuffled[row * 3 : row * 3 + 3, col * 3 : col * 3 + 3] == source).all()
    # 14 px: the last 2 rows and columns stay; views [V, S, S, 3] are shuffled alike
    larger = np.pad(image, ((0, 2), (0, 2), (0, 0)), constant_values=99)
    views = np.stack([larger, larger])
    found = _probe_eagerly_and_in_a_dataset(pp.shuffle_tiles, views)
    np.testing.assert_array_equal(found[1, :12, :12], shuffled)
    assert (found[:, 12:] == 99).all() and (found[:, :, 12:] == 99).all()


def test_shortcut_report_matches_the_predictor_on_probed_images(finished_run, tmp_path):
    import shutil

    config, finished = finished_run
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    report = evaluation.shortcuts(run, "val")
    written = json.loads((run / "eval_val" / "report.json").read_text())
    assert written["shortcuts"] == report["shortcuts"]
    assert (run / "eval_val" / "shortcuts.png").stat().st_size > 5000
    shortcuts = report["shortcuts"]
    assert shortcuts["clean"]["accuracy"] == pytest.approx(report["accuracy"])
    # the grey-level accuracy, recomputed from the Predictor on eagerly probed images
    data = ip.prepare_data(config.data, config.seed)
    resize = pp.compose([pp.decode, pp.make_resize(config.data.image_size), pp.to_uint8])
    normalize = pp.make_normalize(config.data.normalization)
    images, labels = [], []
    for example in ip.split_dataset(data, "val"):
        probed = pp.grey_level(resize({"image": example["image"]}))
        images.append(np.asarray(normalize(probed)["image"]))
        labels.append(int(example["label"]))
    predicted = inference.Predictor(run).probabilities_of(np.stack(images)).argmax(-1)
    assert len(labels) == data.num_examples("val")
    grey = shortcuts["probes"]["grey_level"]
    assert grey["accuracy"] == pytest.approx(np.mean(predicted == np.array(labels)))
    assert grey["accuracy_change"] == pytest.approx(grey["accuracy"] - report["accuracy"])
