"""The command-line entry points run through `python -m` on tiny inputs."""

import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, command_python, run_command


def _run(*args, cwd):
    result = run_command(args, cwd=cwd, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _config_flags(root, tmp_path):
    return [
        "--config",
        str(PROJECT_ROOT / "experiments/cnn.py:synthetic"),
        f"--config.data.root={root}",
        f"--config.data.prepared_dir={tmp_path / 'prepared'}",
        "--config.data.image_size=32",
    ]


def test_eda_writes_figures_and_counts(synthetic_root, tmp_path):
    out = _run(
        "artjax.eda",
        *_config_flags(synthetic_root, tmp_path),
        f"--outdir={tmp_path / 'eda'}",
        cwd=tmp_path,
    )
    for name in ("class_distribution", "pixel_histograms", "samples", "augmented"):
        assert (tmp_path / "eda" / f"{name}.png").stat().st_size > 1000
    assert "Pop Art" in out and "Synthetic PopArt Painter 1" in out
    assert "Synthetic Multi Genre Painter" not in out


def test_pipeline_benchmark_runs(synthetic_root, tmp_path):
    out = _run(
        "artjax.bench",
        "pipeline",
        *_config_flags(synthetic_root, tmp_path),
        "--images=64",
        "--config.batch_size=16",
        cwd=tmp_path,
    )
    for row in ("decode+resize", "full, warm (cached)", "keras ImageDataGenerator"):
        assert row in out


def test_accelerator_benchmark_runs_on_cpu_at_tiny_sizes(synthetic_root, tmp_path):
    from artjax import benchmarks
    from tests.conftest import make_config

    config = make_config(synthetic_root, tmp_path / "prepared")
    config.model.name, config.model.stage_sizes, config.model.width = "resnet", (1, 1), 4
    # one size and dtype, one compile (bfloat16 compiles slowly on CPU; the study script's test
    # runs a bfloat16 model)
    rows = benchmarks.bench_accelerator(
        config, [32], ["float32"], batch_per_device=2, n=1, with_pipeline=True
    )
    assert [(r["input"], r["size"], r["dtype"]) for r in rows] == [
        ("synthetic", 32, "float32"),
        ("tf.data", 32, "float32"),
    ]
    assert all(r["images_per_second"] > 0 and r["step_ms"] > 0 for r in rows)


def test_the_accelerator_benchmark_needs_no_tensorflow(tmp_path):
    # Accelerator images often hold JAX without TensorFlow: on synthetic batches the benchmark
    # runs in a fresh interpreter where TensorFlow, Keras, pandas, scikit-learn and Pillow cannot
    # be imported (a ResNet at a tiny size, float32 only: one compile). Not through run_command:
    # its command server has TensorFlow imported already.
    blocked = ("tensorflow", "keras", "tf_keras", "pandas", "sklearn", "PIL")
    code = (
        "import importlib.abc, runpy, sys\n"
        "class Blocked(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ImportError(f'{name} is blocked')\n"
        "sys.meta_path.insert(0, Blocked())\n"
        "sys.argv = ['artjax.bench', *sys.argv[1:]]\n"
        "runpy.run_module('artjax.bench', run_name='__main__', alter_sys=True)\n"
    )
    args = [
        "accelerator",
        "--config=experiments/resnet50_scratch.py",
        "--config.model.stage_sizes=(1,1)",
        "--config.model.width=4",
        "--nopipeline",
        "--sizes=32",
        "--dtypes=float32",
        "--batch_per_device=1",
        "--steps=1",
    ]
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("synthetic")]
    assert [(r[1], r[2]) for r in rows] == [("32", "float32")], result.stdout
    assert float(rows[0][3]) > 0  # images/s
    assert "tf.data" not in result.stdout


def test_the_study_script_runs_on_cpu_at_tiny_sizes(synthetic_root, tmp_path):
    import json

    from tests.conftest import experiment_config

    # The ResNet50-from-scratch row with the :gpu settings and the Keras-semantics class weights,
    # made tiny (in float32: bfloat16 compiles slowly on CPU); a ResNet50 ImageNet row without its
    # weights is listed as skipped.
    gpu = experiment_config("resnet50_scratch.py:gpu,weighted", {})
    assert (gpu.data.image_size, gpu.batch_size, gpu.model.dtype) == (200, 16, "bfloat16")
    assert gpu.class_weighted
    tiny = [
        "--config.model.dtype=float32",
        "--config.data.image_size=32",
        f"--config.data.prepared_dir={tmp_path / 'prepared'}",
        "--config.model.stage_sizes=(1,1)",
        "--config.model.width=4",
        "--config.num_epochs=1",
        "--config.batch_size=8",
        "--config.eval_batch_size=8",
        "--config.calibration.enabled=False",
    ]
    python = command_python(tmp_path)  # the script's commands run through the command server
    env = dict(
        os.environ,
        PYTHONPATH=str(PROJECT_ROOT),
        PYTHON=python,
        ONLY="resnet50_scratch_keras_weighted resnet50_imagenet",
        OVERRIDES=" ".join(tiny),
        IMAGENET_DIR=str(tmp_path / "imagenet"),
        BENCH="0",
    )
    out = tmp_path / "study"
    result = subprocess.run(
        [str(PROJECT_ROOT / "experiments/run_study_on_gpu.sh"), str(synthetic_root), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = (out / "results.md").read_text()
    report = json.loads((out / "resnet50_scratch_keras_weighted/eval_test/report.json").read_text())
    row = next(line for line in table.splitlines() if "resnet50_scratch_keras_weighted" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:6] == ["resnet50 (float32)", "32", "Keras sum/batch", "1 of 1"] + [
        f"{report['accuracy']:.3f}"
    ]
    assert f"not run: resnet50_imagenet (no {tmp_path / 'imagenet'}/resnet50_torchvision)" in table
    assert "(cpu)" in table.splitlines()[0]


def test_the_backbone_benchmark_times_every_view_of_the_cache(synthetic_root, tmp_path):
    from artjax import benchmarks
    from tests.conftest import experiment_config, frozen_resnet_config

    config = frozen_resnet_config(synthetic_root, tmp_path)
    config.data.views, config.data.crop_fraction = "crops", 0.5
    found = benchmarks.bench_backbone(config, images=6)
    assert (found["paintings"], found["views"]) == (6, 5)
    assert found["ms_per_painting"] > 0
    lite2 = benchmarks.backbone_config(experiment_config("lite0_style.py:all", {}), 2, "crops25")
    assert (lite2.data.image_size, lite2.data.views, lite2.data.crop_fraction) == (
        260,
        "crops",
        0.25,
    )
    assert lite2.init.checkpoint == "checkpoints/imagenet/efficientnet_lite2"
    with pytest.raises(ValueError, match="crops50"):
        benchmarks.backbone_config(lite2, 0, "crops10")
