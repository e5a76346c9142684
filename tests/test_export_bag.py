"""`artjax.export` of a CV bag of crops models: every signature
(probabilities, embedding, Grad-CAM) of the SavedModel and of TFLite equals the library's on real
paintings, and TFLite's views equal the preprocessing's."""

import jax
import numpy as np
import pytest
import tensorflow as tf

from artjax import crossval
from artjax.data import preprocess as pp
from artjax.serving import attribution, exported, inference, records
from tests.conftest import tiny_config
from tests.test_export import PARITY_ATOL, TFLITE_ATOL, real_paintings

# The models are built once, on the worker of this group.
pytestmark = pytest.mark.xdist_group("crops_bag")


@pytest.fixture(scope="module")
def crops_bag(synthetic_root, tmp_path_factory):
    """(workdir, {format: (export.json, export dir)}): a CV bag (2 folds, each calibrated) of the
    tiny CNN evaluated on five crops at half scale, exported in both formats. (A single model's
    export, whole views: test_export; the bag's crops cover a single crops model's path too.)"""
    root = tmp_path_factory.mktemp("crops_bag")
    config = tiny_config(synthetic_root, root, **{"data.views": "crops", "data.crop_fraction": 0.5})
    crossval.run_cv(config, root / "cv", 2, "image")
    exports = {fmt: root / "export" / fmt for fmt in exported.FORMATS}
    return root / "cv", {
        fmt: (exported.export(root / "cv", out, fmt), out) for fmt, out in exports.items()
    }


def at_model_size(paths, size, folder):
    """The paintings resized to TFLite's input size ([N, I, I, 3] uint8), and the same pixels as
    PNG files, so the library reads what TFLite gets."""
    resize = pp.compose([pp.decode, pp.make_resize(size), pp.to_uint8])
    images = np.stack([resize({"image": tf.constant(p.read_bytes())})["image"] for p in paths])
    folder.mkdir(exist_ok=True)
    files = [folder / f"{i}.png" for i in range(len(images))]
    for image, file in zip(images, files):
        file.write_bytes(tf.io.encode_png(image).numpy())
    return images, files


def library_embeddings(workdir, paths):
    """The reference embedding: each model's head input, recorded by Flax's
    capture_intermediates (the CNN's fc1 after its ReLU), averaged over the views and models,
    then normalized."""
    import flax.linen as nn

    predictor = inference.Predictor(workdir)
    views = np.stack([predictor.preprocess(p.read_bytes()) for p in paths])  # [N, V, S, S, 3]
    found = []
    for m in inference.load_models(workdir):
        flat = views.reshape(-1, *views.shape[2:])
        _, state = m.model.apply(m.variables, flat, capture_intermediates=True)
        hidden = nn.relu(state["intermediates"]["fc1"]["__call__"][0])
        found.append(np.asarray(hidden).reshape(*views.shape[:2], -1).mean(1))
    mean = np.mean(found, axis=0)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def explainer_maps(workdir, paths, size):
    """(class names [N, k], probabilities [N, k], maps [N, k, size, size]) of artjax.explain's
    Explainer, the maps resized to `size` as the SavedModel resizes them."""
    found, errors = attribution.Explainer(workdir).explain_files(paths, top_k=exported.TOP_K)
    assert not errors
    maps = np.stack([np.stack(e.maps) for e in found])
    resized = tf.image.resize(np.transpose(maps, [0, 2, 3, 1]), [size, size]).numpy()
    return (
        [[c for c, _ in e.ranked] for e in found],
        np.array([[p for _, p in e.ranked] for e in found]),
        np.clip(np.transpose(resized, [0, 3, 1, 2]), 0.0, 1.0),
    )


def test_the_savedmodel_signatures_equal_the_library_for_a_crops_bag(crops_bag, real_data_root):
    workdir, formats = crops_bag
    record, out = formats["savedmodel"]
    paths = real_paintings(real_data_root, 4)
    loaded = tf.saved_model.load(str(out))
    expected, _, _ = inference.Predictor(workdir).predict_files(paths)
    encoded = loaded.signatures["serve_encoded"](
        encoded=tf.constant([p.read_bytes() for p in paths])
    )
    np.testing.assert_allclose(encoded["probabilities"].numpy(), expected, atol=PARITY_ATOL)
    images = tf.stack([tf.io.decode_jpeg(p.read_bytes(), channels=3) for p in paths])  # 256 px
    served = loaded.signatures["serving_default"](images=images)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=PARITY_ATOL)
    embedding = loaded.signatures["embed"](images=images)["embedding"].numpy()
    reference = library_embeddings(workdir, paths)
    np.testing.assert_allclose(embedding, reference, atol=PARITY_ATOL)
    # the gallery's call gives the gate's embedding from its own pass, the same
    np.testing.assert_allclose(encoded["embedding"].numpy(), reference, atol=PARITY_ATOL)
    explained = loaded.signatures["explain"](images=images)
    names, probabilities, maps = explainer_maps(workdir, paths, images.shape[1])
    assert [[c.decode() for c in row] for row in explained["classes"].numpy()] == names
    np.testing.assert_allclose(explained["probabilities"].numpy(), probabilities, atol=PARITY_ATOL)
    np.testing.assert_allclose(explained["maps"].numpy(), maps, atol=PARITY_ATOL)
    assert maps.max() == pytest.approx(1.0) and maps.min() == 0.0  # maps, not constants
    assert set(record["signatures"]) == {"serving_default", "serve_encoded", "embed", "explain"}
    assert record["signatures"]["explain"]["outputs"]["maps"] == "float32 [N, 3, H, W]"
    assert record["source"]["steps"] == [m.step for m in inference.load_models(workdir)]
    assert record["platforms"] == ["cpu", "cuda"] and record["views"] == "crops"
    # The weights (each model's, for a bag) are saved once, as variables, for all signatures and
    # both platforms, each distinct array once: the graph holds none of them.
    saved = tf.train.list_variables(str(out / "variables" / "variables"))
    weights = [m.variables for m in inference.load_models(workdir)]
    distinct = {np.asarray(x).tobytes(): np.asarray(x) for x in jax.tree.leaves(weights)}
    found = sorted(int(np.prod(shape)) for name, shape in saved if "_CHECKPOINTABLE" not in name)
    assert found == sorted(x.size for x in distinct.values())
    assert (out / "saved_model.pb").stat().st_size < sum(x.nbytes for x in distinct.values())


def test_tflite_signatures_equal_the_library_for_a_crops_bag(crops_bag, real_data_root, tmp_path):
    workdir, formats = crops_bag
    record, out = formats["tflite"]
    size = record["input_size"]
    assert size == 2 * record["image_size"]  # five crops at half scale: each crop is S pixels
    images, files = at_model_size(real_paintings(real_data_root, 4), size, tmp_path / "png")
    interpreter = tf.lite.Interpreter(model_path=str(out / records.TFLITE_FILE))
    assert set(interpreter.get_signature_list()) == {"serving_default", "embed", "explain"}
    run = lambda name: interpreter.get_signature_runner(name)(images=images)
    expected, _, _ = inference.Predictor(workdir).predict_files(files)
    np.testing.assert_allclose(run("serving_default")["probabilities"], expected, atol=TFLITE_ATOL)
    np.testing.assert_allclose(
        run("embed")["embedding"], library_embeddings(workdir, files), atol=TFLITE_ATOL
    )
    explained = run("explain")
    names, probabilities, maps = explainer_maps(workdir, files, record["image_size"])
    classes = record["classes"]
    assert [[classes[i] for i in row] for row in explained["class_ids"]] == names
    np.testing.assert_allclose(explained["probabilities"], probabilities, atol=TFLITE_ATOL)
    np.testing.assert_allclose(explained["maps"], maps, atol=PARITY_ATOL)
    assert record["convolutions"] == {"cpu": "xla (TFLite's own kernels, XNNPACK)"}


@pytest.mark.parametrize("views", list(pp.VIEWS))
def test_tflite_views_equal_the_preprocessing_views(views, synthetic_root):
    from artjax import configs
    from artjax.data import input_pipeline as ip

    data = configs.base_config().data
    data.image_size, data.views, data.crop_fraction = 48, views, 0.5
    source = exported.tflite_input_size(data)
    assert source == (96 if "crops" in views else 48)
    paintings = sorted((synthetic_root / "images").rglob("*.jpg"))[:3]
    images, _ = at_model_size(paintings, source, synthetic_root.parent / f"views_{views}")
    by_preprocess = pp.compose(ip.eval_ops(data)[1:-1])  # the views, rounded to uint8
    expected = np.stack([by_preprocess({"image": image})["image"] for image in images])
    found = exported.fixed_size_views(data)(tf.constant(images)).numpy()
    np.testing.assert_array_equal(found, expected.astype(np.float32))
    assert len(np.unique(found)) > 10  # paintings, not a constant
    # and the whole painting at the model's size, which Grad-CAM maps
    by_decode_ops = pp.compose(ip.decode_ops(48)[1:])
    expected = np.stack([by_decode_ops({"image": image})["image"] for image in images])
    found = exported.fixed_size_whole(data)(tf.constant(images)).numpy()
    assert np.abs(found - expected).max() <= 1  # matrix products round like the resize
    assert np.mean(found == expected) > 0.999
