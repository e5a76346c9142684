"""`artjax.export`: a SavedModel and a TFLite file whose signatures (probabilities, embedding,
Grad-CAM) equal the library's on real paintings, for one model and for a CV bag of crops models;
TFLite's views; the collection index; a SavedModel that serves with TensorFlow alone."""

import io
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from artjax import checkpointing, crossval
from artjax.data import preprocess as pp
from artjax.serving import attribution, collection, exported, inference, records
from tests.conftest import run_command, tiny_config

# The session's finished run is built once, on the worker of this group.
pytestmark = pytest.mark.xdist_group("finished_run")

PARITY_ATOL = 1e-4  # SavedModel against the Predictor, and Grad-CAM maps (the bound)
TFLITE_ATOL = 1e-5  # TFLite (XNNPACK) against the SavedModel and the Predictor


def real_paintings(root, count=6):
    """`count` paintings of different artists of the real download."""
    artists = sorted(p for p in (root / "images").iterdir() if p.is_dir())
    step = max(1, len(artists) // count)
    return [sorted(a.glob("*.jpg"))[0] for a in artists[::step][:count]]


@pytest.fixture(scope="module")
def exported_run(finished_run, synthetic_root, tmp_path_factory):
    """The finished run exported as a SavedModel by the command, with the index of the synthetic
    collection it was trained on."""
    _, run = finished_run
    out = tmp_path_factory.mktemp("exported") / "savedmodel"
    result = run_command(
        ["artjax.export", f"--workdir={run}", f"--output={out}", f"--index={synthetic_root}"],
        cwd=out.parent,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


@pytest.fixture(scope="module")
def crops_bag(synthetic_root, tmp_path_factory):
    """A CV bag (2 folds, each calibrated) of the tiny CNN evaluated on five crops at half scale,
    exported in both formats."""
    root = tmp_path_factory.mktemp("crops_bag")
    config = tiny_config(synthetic_root, root, **{"data.views": "crops", "data.crop_fraction": 0.5})
    crossval.run_cv(config, root / "cv", 2, "image")
    records = {fmt: exported.export(root / "cv", root / fmt, fmt) for fmt in exported.FORMATS}
    return root / "cv", {fmt: (records[fmt], root / fmt) for fmt in records}


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


def test_the_savedmodel_signatures_equal_the_library_for_a_bag_of_crops_models(
    crops_bag, real_data_root
):
    bag, formats = crops_bag
    record, out = formats["savedmodel"]
    paths = real_paintings(real_data_root, 4)
    loaded = tf.saved_model.load(str(out))
    expected, _, _ = inference.Predictor(bag).predict_files(paths)
    encoded = loaded.signatures["serve_encoded"](
        encoded=tf.constant([p.read_bytes() for p in paths])
    )
    np.testing.assert_allclose(encoded["probabilities"].numpy(), expected, atol=PARITY_ATOL)
    images = tf.stack([tf.io.decode_jpeg(p.read_bytes(), channels=3) for p in paths])  # 256 px
    served = loaded.signatures["serving_default"](images=images)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=PARITY_ATOL)
    embedding = loaded.signatures["embed"](images=images)["embedding"].numpy()
    np.testing.assert_allclose(embedding, library_embeddings(bag, paths), atol=PARITY_ATOL)
    explained = loaded.signatures["explain"](images=images)
    names, probabilities, maps = explainer_maps(bag, paths, images.shape[1])
    assert [[c.decode() for c in row] for row in explained["classes"].numpy()] == names
    np.testing.assert_allclose(explained["probabilities"].numpy(), probabilities, atol=PARITY_ATOL)
    np.testing.assert_allclose(explained["maps"].numpy(), maps, atol=PARITY_ATOL)
    assert maps.max() == pytest.approx(1.0) and maps.min() == 0.0  # maps, not constants
    assert set(record["signatures"]) == {"serving_default", "serve_encoded", "embed", "explain"}
    assert record["signatures"]["explain"]["outputs"]["maps"] == "float32 [N, 3, H, W]"
    assert record["source"]["steps"] == [m.step for m in inference.load_models(bag)]
    assert record["platforms"] == ["cpu", "cuda"] and record["views"] == "crops"


def test_tflite_signatures_equal_the_library_for_a_bag_of_crops_models(
    crops_bag, real_data_root, tmp_path
):
    bag, formats = crops_bag
    record, out = formats["tflite"]
    size = record["input_size"]
    assert size == 2 * record["image_size"]  # five crops at half scale: each crop is S pixels
    images, files = at_model_size(real_paintings(real_data_root, 4), size, tmp_path / "png")
    interpreter = tf.lite.Interpreter(model_path=str(out / records.TFLITE_FILE))
    assert set(interpreter.get_signature_list()) == {"serving_default", "embed", "explain"}
    run = lambda name: interpreter.get_signature_runner(name)(images=images)
    expected, _, _ = inference.Predictor(bag).predict_files(files)
    np.testing.assert_allclose(run("serving_default")["probabilities"], expected, atol=TFLITE_ATOL)
    np.testing.assert_allclose(
        run("embed")["embedding"], library_embeddings(bag, files), atol=TFLITE_ATOL
    )
    explained = run("explain")
    names, probabilities, maps = explainer_maps(bag, files, record["image_size"])
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


def test_export_json_records_the_classes_the_contract_and_the_source(exported_run, finished_run):
    _, run = finished_run
    out, stdout = exported_run
    record = json.loads((out / records.EXPORT_FILE).read_text())
    assert record["classes"] == checkpointing.read_run(run)["classes"]
    assert record["source"] == {
        "workdir": str(run),
        "checkpoint": "best",
        "steps": [checkpointing.resolve_step(run, "best")],
    }
    assert record["signatures"]["serving_default"] == {
        "inputs": {"images": "uint8 [N, H, W, 3]"},
        "outputs": {
            "probabilities": "float32 [N, 6]",
            "classes": "string [N, 6]",
            "top_class": "string [N]",
        },
    }
    assert record["signatures"]["serve_encoded"]["inputs"] == {"encoded": "string [N]"}
    assert record["convolutions"] == {"cpu": "patches (artjax's CPU kernels)", "cuda": "xla"}
    assert record["calibrated"] is True and record["versions"]["artjax"]
    assert record["uncertain_below"] == inference.Predictor(run).uncertain_below
    assert f"written to {out}" in stdout


def test_the_savedmodel_gives_the_predictors_probabilities_on_real_paintings(
    exported_run, finished_run, real_data_root
):
    _, run = finished_run
    out, _ = exported_run
    paths = real_paintings(real_data_root)
    expected, readable, errors = inference.Predictor(run).predict_files(paths)
    assert readable == paths and not errors
    loaded = tf.saved_model.load(str(out))
    encoded = loaded.signatures["serve_encoded"](
        encoded=tf.constant([p.read_bytes() for p in paths])
    )
    np.testing.assert_allclose(encoded["probabilities"].numpy(), expected, atol=PARITY_ATOL)
    # uint8 arrays of any size: the paintings as decoded, at 256 px (resized inside)
    images = tf.stack([tf.io.decode_jpeg(p.read_bytes(), channels=3) for p in paths])
    served = loaded.signatures["serving_default"](images=images)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=PARITY_ATOL)
    classes = checkpointing.read_run(run)["classes"]
    top = [classes[i] for i in expected.argmax(-1)]
    assert [c.decode() for c in served["top_class"].numpy()] == top
    assert [c.decode() for c in served["classes"].numpy()[0]] == classes
    assert len(set(top)) > 1  # the paintings are not all given one style


def test_the_savedmodel_serves_with_tensorflow_alone(exported_run, finished_run, real_data_root):
    _, run = finished_run
    out, _ = exported_run
    painting = real_paintings(real_data_root)[0]
    # artjax, JAX and Flax cannot be imported in the serving process (TensorFlow imports JAX
    # when it is installed, and goes on without it)
    script = (
        "import sys\n"
        "for name in ('artjax', 'jax', 'jaxlib', 'flax'):\n"
        "    sys.modules[name] = None\n"
        "import tensorflow as tf\n"
        f"model = tf.saved_model.load({str(out)!r})\n"
        f"encoded = tf.constant([open({str(painting)!r}, 'rb').read()])\n"
        "found = model.signatures['serve_encoded'](encoded=encoded)\n"
        "top = found['probabilities'].numpy().max()\n"
        "print(found['top_class'].numpy()[0].decode(), float(top))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd="/"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    style, probability = result.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    (expected,) = inference.Predictor(run).describe_file(painting, 1).ranked
    assert style == expected[0] and float(probability) == pytest.approx(expected[1], abs=1e-4)


def test_the_index_neighbours_equal_a_brute_force_reference_and_a_painting_finds_itself(
    exported_run, synthetic_root
):
    out, stdout = exported_run
    index = collection.CollectionIndex.load(out)
    files = sorted((synthetic_root / "images").rglob("*.jpg"))
    assert sorted(index.files) == sorted(f.relative_to(synthetic_root).as_posix() for f in files)
    assert f"index of {len(files)} paintings" in stdout
    loaded = tf.saved_model.load(str(out))
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-5)
    for painting in (0, len(index) // 2, len(index) - 1):
        image = tf.io.decode_image((synthetic_root / index.files[painting]).read_bytes(), 3)
        query = loaded.signatures["embed"](images=image[None])["embedding"].numpy()[0]
        found = index.nearest(query, 5)
        similarity = index.embeddings.astype(np.float64) @ query
        reference = np.lexsort((np.arange(len(similarity)), -similarity))[:5]
        assert [i for i, _ in found] == reference.tolist()
        np.testing.assert_allclose([s for _, s in found], similarity[reference], atol=1e-5)
        assert found[0][0] == painting and found[0][1] == pytest.approx(1.0, abs=1e-4)
        described = index.describe(painting)
        artist = pathlib.Path(index.files[painting]).parent.name.replace("_", " ")
        assert described["artist"] == artist and described["genres"]
        with Image.open(io.BytesIO(index.thumbnail(painting))) as thumbnail:
            assert thumbnail.format == "JPEG" and max(thumbnail.size) <= collection.THUMBNAIL_SIDE
    with pytest.raises(IndexError, match="not in the index"):
        index.thumbnail(len(index))
    assert json.loads((out / records.EXPORT_FILE).read_text())["index"]["paintings"] == len(index)


def test_a_wrong_workdir_or_an_unsupported_export_is_a_clear_error(finished_run, tmp_path):
    _, run = finished_run
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nothing'}.*training workdir"):
        exported.export(tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(exported.ExportError, match="'onnx' is not one of"):
        exported.export(run, tmp_path / "out", "onnx")
