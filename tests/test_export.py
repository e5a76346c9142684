"""`artjax.export`: a SavedModel and a TFLite file that give the Predictor's probabilities on real
paintings, and a SavedModel that serves with TensorFlow alone."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from artjax import checkpointing, inference, serving
from artjax.data import preprocess as pp
from tests.conftest import run_command

# The session's finished run is built once, on the worker of this group.
pytestmark = pytest.mark.xdist_group("finished_run")

PARITY_ATOL = 1e-4  # SavedModel against the Predictor (the bound)
TFLITE_ATOL = 1e-5  # TFLite (XNNPACK) against the Predictor


def real_paintings(root, count=6):
    """`count` paintings of different artists of the real download."""
    artists = sorted(p for p in (root / "images").iterdir() if p.is_dir())
    step = max(1, len(artists) // count)
    return [sorted(a.glob("*.jpg"))[0] for a in artists[::step][:count]]


@pytest.fixture(scope="module")
def exported(finished_run, tmp_path_factory):
    """The finished run exported as a SavedModel by the command."""
    _, run = finished_run
    out = tmp_path_factory.mktemp("exported") / "savedmodel"
    result = run_command(
        ["artjax.export", f"--workdir={run}", f"--output={out}"], cwd=out.parent, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_export_json_records_the_classes_the_contract_and_the_source(exported, finished_run):
    _, run = finished_run
    out, stdout = exported
    record = json.loads((out / serving.EXPORT_FILE).read_text())
    assert record["classes"] == checkpointing.read_run(run)["classes"]
    assert record["source"] == {
        "workdir": str(run),
        "checkpoint": "best",
        "steps": [checkpointing.resolve_step(run, "best")],
    }
    assert set(record["input"]) == {"serving_default", "serve_encoded", "outputs"}
    assert record["calibrated"] is True and record["versions"]["artjax"]
    assert f"written to {out}" in stdout


def test_the_savedmodel_gives_the_predictors_probabilities_on_real_paintings(
    exported, finished_run, real_data_root
):
    _, run = finished_run
    out, _ = exported
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


def test_the_savedmodel_serves_with_tensorflow_alone(exported, finished_run, real_data_root):
    _, run = finished_run
    out, _ = exported
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


def test_tflite_gives_the_predictors_probabilities(finished_run, real_data_root, tmp_path):
    config, run = finished_run
    record = serving.export(run, tmp_path / "lite", "tflite")
    size = record["image_size"]
    paths = real_paintings(real_data_root)
    resize = pp.compose([pp.decode, pp.make_resize(size), pp.to_uint8])
    images = np.stack([resize({"image": tf.constant(p.read_bytes())})["image"] for p in paths])
    interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "lite" / serving.TFLITE_FILE))
    found = interpreter.get_signature_runner()(images=images)["probabilities"]
    expected, _, _ = inference.Predictor(run).predict_files(paths)
    np.testing.assert_allclose(found, expected, atol=TFLITE_ATOL)


def test_a_wrong_workdir_or_an_unsupported_export_is_a_clear_error(finished_run, tmp_path):
    _, run = finished_run
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nothing'}.*training workdir"):
        serving.export(tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(serving.ExportError, match="'onnx' is not one of"):
        serving.export(run, tmp_path / "out", "onnx")
    # a run evaluated on crops: five views per painting, which TFLite's one input cannot take
    crops = tmp_path / "crops"
    shutil.copytree(run, crops)
    record = json.loads((crops / checkpointing.RUN_FILE).read_text())
    record["config"]["data"]["views"] = "crops"
    (crops / checkpointing.RUN_FILE).write_text(json.dumps(record))
    with pytest.raises(serving.ExportError, match="data.views='crops'.*savedmodel"):
        serving.export(crops, tmp_path / "out", "tflite")
    assert not (tmp_path / "out" / serving.TFLITE_FILE).exists()
