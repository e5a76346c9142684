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

from artjax import checkpointing
from artjax.serving import collection, exported, inference, records
from tests.conftest import run_command

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


def test_each_model_function_is_converted_once_per_export(finished_run, tmp_path, monkeypatch):
    # tf.saved_model.save traces a module's tf.function attributes again, and each trace would
    # lower the whole model through jax2tf again (seconds for Lite0): the four signatures share
    # one conversion of the outputs and one of the explanation
    _, run = finished_run
    converted, convert = [], exported.jax2tf.convert

    def counting(fn, *args, **kwargs):
        tf_fn = convert(fn, *args, **kwargs)

        def traced(*inputs):
            converted.append(fn.__name__)
            return tf_fn(*inputs)

        return traced

    monkeypatch.setattr(exported.jax2tf, "convert", counting)
    record = exported.export(run, tmp_path / "savedmodel")
    assert sorted(converted) == ["explain", "outputs"]
    assert set(record["signatures"]) == {"serving_default", "serve_encoded", "embed", "explain"}


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


# (An era test on the finished run, kept here on the worker that builds the run; the era
# models' tests: test_era.)
def test_a_model_without_an_era_head_prints_no_period(finished_run, synthetic_root):
    _, run = finished_run
    path = sorted((synthetic_root / "images").rglob("*.jpg"))[0]
    found = inference.Predictor(run).describe_file(path)
    assert found.period is None and found.era_year is None
    result = run_command(["artjax.predict", f"--workdir={run}", str(path)], timeout=300)
    assert result.returncode == 0 and "period" not in result.stdout
