"""A trained run (or a CV workdir's bag of fold models) as a TensorFlow SavedModel or a TFLite file
with its preprocessing and views inside, converted with jax2tf.

The JAX part (`model_functions`) is what the library computes: `inference.Predictor`'s
probabilities (each model's logits averaged over `data.views`, its calibrated temperature, the
mean over a bag's models), the head's input features as an embedding, and `attribution`'s
Grad-CAM. The TensorFlow part is the evaluation preprocessing of `artjax.data` itself
(`input_pipeline.eval_ops`), so an export and the library see the same pixels.

Convolutions (`CONVOLUTIONS`): the SavedModel's program holds artjax's CPU kernels (slices, one
gather and matmuls: `models.cpu_ops`) and XLA's convolutions, chosen by the platform it runs on
(`model.conv_impl=by_platform`), and is serialized for every platform of `PLATFORMS`. TFLite takes
XLA's convolutions, which its converter maps onto its own kernels (XNNPACK on CPU).

Signatures (the whole list, with shapes, is in export.json's `signatures`):
  SavedModel  serving_default  images uint8 [N, H, W, 3], any H and W (resized inside) ->
                               probabilities, classes, top_class; with an era head also era_year
                               and period ("about 1870-1900")
              serve_encoded    encoded string [N]: JPEG or PNG bytes (decoded inside) -> the
                               same, and the embedding (the gate's, from the same pass)
              embed            images -> embedding [N, D], L2-normalized
              explain          images -> the top-k classes and a Grad-CAM map of each, at H x W
  TFLite      the same without serve_encoded, on images uint8 [N, S, S, 3] at the model's size S
              (the application resizes); the views are computed inside from that one image.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import pathlib
import shutil
import tempfile
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from jax.experimental import jax2tf

from artjax import calibration, checkpointing, configs, era, gate, steps
from artjax.data import input_pipeline as ip
from artjax.data import preprocess as pp
from artjax.serving import attribution, inference
from artjax.serving.records import EXPORT_FILE, TFLITE_FILE

FORMATS = ("savedmodel", "tflite")
TOP_K = 3  # classes the explain signature maps
# Where each format's program is serialized for (jax2tf native serialization), and the
# convolutions it runs on each (model.conv_impl: BENCHMARKS.md has the speeds).
PLATFORMS = {"savedmodel": ("cpu", "cuda"), "tflite": ("cpu",)}
CONV_IMPL = {"savedmodel": "by_platform", "tflite": "tflite"}
CONVOLUTIONS = {
    "savedmodel": {"cpu": "patches (artjax's CPU kernels)", "cuda": "xla"},
    "tflite": {"cpu": "xla (TFLite's own kernels, XNNPACK)"},
}


class ExportError(ValueError):
    """A run that cannot be exported in the asked format."""


class ModelFunctions(NamedTuple):
    """JAX functions of the models' `weights` and normalized inputs: `views` are what
    `input_pipeline.eval_ops` makes ([N, V, S, S, 3], or [N, S, S, 3] for data.views=whole),
    `whole` the painting at the model's size [N, S, S, 3] (what `attribution.Explainer` maps).
    The weights are an argument, not constants of the functions, so that an export holds them once
    (as variables) for all its signatures and platforms."""

    # (weights, views) -> {"probabilities": [N, C], "embedding": [N, D] of unit length, and
    # "era_year": [N] where a model has an era head}
    outputs: Callable
    embed: Callable  # (weights, views) -> the embedding alone
    explain: Callable  # (weights, whole, class ids [N, k]) -> Grad-CAM maps [N, k, S, S]
    weights: list  # each model's variables (params, batch_stats)
    info: dict


def model_functions(
    workdir, checkpoint: str = "best", conv_impl: str = "auto", top_k: int = TOP_K
) -> ModelFunctions:
    """The probabilities, embedding and Grad-CAM of a run's checkpoint, or of a CV workdir's bag
    (probabilities and maps averaged over its models; the embedding is the mean of their head
    inputs, normalized)."""
    loaded = inference.load_models(workdir, checkpoint, conv_impl=conv_impl)
    config, run = loaded[0].config, loaded[0].run
    multi_label = bool(run.get("multi_label", False))
    size = int(config.data.image_size)
    k = min(top_k, len(run["classes"]))
    cams = [
        attribution.grad_cam_fn(
            m.model, attribution.last_feature_map(m.model, m.variables, (size, size, 3))
        )
        for m in loaded
    ]

    has_era = any(m.config.model.era_head for m in loaded)
    per_model = [inference.model_outputs(m, cnn_head_input=True) for m in loaded]

    def outputs(weights, views):
        """The bag's probabilities, the unit embedding (the mean of its models' head inputs) and,
        where models have an era head, their mean era estimate in years: one backbone pass per
        model for all of them."""
        found, years, inputs = [], [], []
        for m, model_outputs, variables in zip(loaded, per_model, weights):
            logits, estimate, head_input = model_outputs(variables, views)
            p = steps.probabilities(logits, multi_label, config.multi_label_loss)
            found.append(calibration.apply(p, m.calibration, multi_label, xp=jnp))
            if estimate is not None:
                years.append(estimate * era.SCALE + era.ORIGIN)
            inputs.append(head_input)
        mean = lambda xs: jnp.mean(jnp.stack(xs), axis=0)
        embedding = mean(inputs)  # unit length, as gate.unit makes it
        norm = jnp.linalg.norm(embedding, axis=-1, keepdims=True)
        result = {"probabilities": mean(found), "embedding": embedding / jnp.maximum(norm, 1e-12)}
        if years:
            result["era_year"] = mean(years)
        return result

    def embed(weights, views):  # the collection's, jitted: XLA drops the heads' work
        return outputs(weights, views)["embedding"]

    def explain(weights, whole, targets):
        maps = []
        for j in range(targets.shape[1]):
            # static slices: TFLite's converter takes no gather of a batch of unknown size
            target = jax.lax.index_in_dim(targets, j, axis=1, keepdims=False)
            found = [cam(v, whole, target) for cam, v in zip(cams, weights)]
            maps.append(jnp.mean(jnp.stack(found), axis=0))
        return jnp.stack(maps, axis=1)

    calibrations = [m.calibration for m in loaded]
    weights = [m.variables for m in loaded]
    inputs = jax.ShapeDtypeStruct((1, *ip.eval_image_shape(config.data)), jnp.float32)
    info = dict(
        embedding_dimensions=int(jax.eval_shape(embed, weights, inputs).shape[-1]),
        classes=list(run["classes"]),
        multi_label=multi_label,
        data=config.data,
        steps=[m.step for m in loaded],
        calibrated=all(calibrations),
        # a bag flags "uncertain" below its models' mean threshold, as the Predictor does
        uncertain_below=(
            float(np.mean([c["uncertain_below"] for c in calibrations]))
            if all(calibrations)
            else None
        ),
        synthetic=bool(run["synthetic"]),
        top_k=k,
        era=dict(
            outputs={"era_year": "the estimate, in years", "period": "as 'about 1870-1900'"},
            span_years=int(config.era.span_years),
            target="the artist's active period from artists.csv (birth + 20 to death)",
        )
        if has_era
        else None,
    )
    return ModelFunctions(outputs, embed, explain, weights, info)


def period_text(years, span_years: int):
    """`era.period_text` in TensorFlow: [N] years -> [N] strings "about 1870-1900"."""
    start = tf.cast(tf.round((years - span_years / 2) / 10.0), tf.int32) * 10
    return tf.strings.join(
        ["about ", tf.strings.as_string(start), "-", tf.strings.as_string(start + span_years)]
    )


def tflite_input_size(data_config) -> int:
    """The side of TFLite's input: the model's size S for the whole painting; for crops, S over
    the crop fraction, so that each crop is S pixels of the input, cut without resizing (the
    application resizes the painting once, as the library's preprocessing resizes each crop)."""
    size = int(data_config.image_size)
    if not pp.VIEWS[data_config.views]["crops"]:
        return size
    return int(round(size / float(data_config.crop_fraction)))


def _resize_matrix(source: int, size: int) -> np.ndarray:
    """[size, source]: `tf.image.resize` with antialiasing along one axis, as a matrix (it is
    linear): the resized rows of an identity image."""
    identity = tf.eye(source)[:, None, :]  # rows as channels
    return tf.image.resize(identity, [size, 1], antialias=True)[:, 0, :].numpy()


def fixed_size_views(data_config) -> Callable:
    """uint8 images [N, I, I, 3] at `tflite_input_size` I -> float32 [N, V, S, S, 3] ([N, S, S, 3]
    for data.views=whole) in [0, 255]: what `preprocess.make_views` and `to_uint8` make of each, in
    TFLite's builtin ops. Crops are slices (resized bilinearly where I times the fraction is not S:
    for enlarging, that equals the antialiased resizing of `make_resize`)."""
    size, found = int(data_config.image_size), pp.VIEWS[data_config.views]
    source = tflite_input_size(data_config)
    # the crop side as preprocess computes it: float32 product, truncated
    side = int(np.float32(source) * np.float32(data_config.crop_fraction))
    corners = [(0, 0), (0, source - side), (source - side, 0), (source - side, source - side)]
    corners.append(((source - side) // 2, (source - side) // 2))

    def views(images):
        x = tf.cast(images, tf.float32)
        if data_config.views == "whole":
            return x
        if found["crops"]:
            parts = [x[:, t : t + side, s : s + side] for t, s in corners]
            if side != size:
                parts = [tf.image.resize(p, [size, size], "bilinear") for p in parts]
                parts = [tf.round(tf.clip_by_value(p, 0.0, 255.0)) for p in parts]
        else:
            parts = [x]
        stacked = tf.stack(parts, axis=1)
        if found["mirrored"]:
            stacked = tf.concat([stacked, tf.reverse(stacked, axis=[3])], 1)
        return stacked

    return views


def fixed_size_whole(data_config) -> Callable:
    """uint8 images [N, I, I, 3] at `tflite_input_size` -> float32 [N, S, S, 3]: the painting at
    the model's size as `input_pipeline.decode_ops` resizes it (antialiased, rounded), what
    Grad-CAM maps. The resizing is two matrix products (TFLite has no antialiased resize)."""
    size, source = int(data_config.image_size), tflite_input_size(data_config)
    weights = tf.constant(_resize_matrix(source, size))

    def whole(images):
        x = tf.cast(images, tf.float32)
        if source == size:
            return x
        x = tf.transpose(x, [0, 3, 1, 2])  # [N, 3, I, I]
        x = tf.matmul(tf.matmul(weights, x), weights, transpose_b=True)  # [N, 3, S, S]
        return tf.round(tf.clip_by_value(tf.transpose(x, [0, 2, 3, 1]), 0.0, 255.0))

    return whole


def _converted(fn, weights: Callable, platforms, inputs: int = 1):
    """`fn(weights(), *inputs)` as a TensorFlow function of the inputs alone; `weights()` gives
    the tf.Variables, saved once however many functions and platforms read them."""
    converted = tf.function(
        jax2tf.convert(
            fn,
            with_gradient=False,
            polymorphic_shapes=[None] + ["(b, ...)"] * inputs,
            native_serialization_platforms=platforms,
        ),
        autograph=False,
    )
    return lambda *args: converted(weights(), *args)


class _Converted(tf.Module):
    """The model functions as TensorFlow functions of normalized inputs, over one set of
    variables."""

    def __init__(self, fns: ModelFunctions, platforms):
        super().__init__()
        # A flat list, which tf.Module tracks (and saves), with one variable per distinct array:
        # the fold models of a bag over a frozen backbone share its weights. The JAX pytree is
        # rebuilt per call.
        leaves, tree = jax.tree.flatten(fns.weights)
        index, distinct, which = {}, [], []  # content -> its place in distinct; leaf -> place
        for x in map(np.asarray, leaves):
            key = (x.dtype.str, x.shape, hashlib.sha256(x.tobytes()).digest())
            if key not in index:
                index[key] = len(distinct)
                distinct.append(x)
            which.append(index[key])
        self._weights = [tf.Variable(x, trainable=False) for x in distinct]
        weights = lambda: jax.tree.unflatten(tree, [self._weights[i] for i in which])
        # One program for the probabilities, the era and the embedding, one pass of each model
        # for all three (the heads cost little beside it); a signature returns what it names.
        self.outputs = _converted(fns.outputs, weights, platforms)
        self._era = fns.info["era"]
        self.explain = _converted(fns.explain, weights, platforms, inputs=2)
        self._classes = tf.constant(fns.info["classes"])
        self._top_k = fns.info["top_k"]

    def embed(self, views):
        return self.outputs(views)["embedding"]

    def predicted(self, views, strings: bool = True, embedding: bool = False) -> dict:
        """TF Serving's outputs (`strings`: with the class names), with an era head the estimate
        in years and as a period, and the `embedding` where asked."""
        outputs = self.outputs(views)
        p, years = outputs["probabilities"], outputs.get("era_year")
        found = {"probabilities": p}
        if embedding:
            found["embedding"] = outputs["embedding"]
        if strings:
            found["classes"] = tf.broadcast_to(self._classes, tf.shape(p))
            found["top_class"] = tf.gather(self._classes, tf.argmax(p, axis=-1))
        if years is not None:
            found["era_year"] = years
            if strings:
                found["period"] = period_text(years, self._era["span_years"])
        return found

    def explained(self, views, whole) -> dict:
        """The top-k classes (TensorFlow's top_k, which TFLite has: ties to the lower id) and
        the Grad-CAM map of each."""
        top_p, top = tf.math.top_k(self.outputs(views)["probabilities"], self._top_k)
        return {
            "class_ids": top,
            "classes": tf.gather(self._classes, top),
            "probabilities": top_p,
            "maps": self.explain(whole, top),
        }


def _each(batch, preprocess, shape):
    return tf.map_fn(
        lambda item: preprocess({"image": item})["image"],
        batch,
        fn_output_signature=tf.TensorSpec(shape, tf.float32),
    )


# Every signature below is plain TensorFlow around the jax2tf functions (no Python control flow on
# tensors), so each is traced without AutoGraph, whose source conversion costs seconds.
_signature = functools.partial(tf.function, autograph=False)


def _savedmodel_signatures(fns: ModelFunctions) -> tuple[tf.Module, dict]:
    data = fns.info["data"]
    size = int(data.image_size)
    module = _Converted(fns, PLATFORMS["savedmodel"])
    ops = ip.eval_ops(data)  # decode, resize (or views), uint8, normalize
    views_of_images, views_of_encoded = pp.compose(ops[1:]), pp.compose(ops)
    whole_of_images = pp.compose([*ip.decode_ops(size)[1:], ops[-1]])
    shape, whole_shape = ip.eval_image_shape(data), (size, size, 3)
    images = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")

    def explain(images):
        found = module.explained(
            _each(images, views_of_images, shape), _each(images, whole_of_images, whole_shape)
        )
        # [N, k, S, S] -> [N, k, H, W]: the maps at the input's resolution
        maps = tf.image.resize(tf.transpose(found["maps"], [0, 2, 3, 1]), tf.shape(images)[1:3])
        return {**found, "maps": tf.clip_by_value(tf.transpose(maps, [0, 3, 1, 2]), 0.0, 1.0)}

    # Kept only as signatures, not as attributes of the module: `tf.saved_model.save` traces a
    # module's functions again, and each trace converts the model again (seconds for Lite0).
    signatures = {
        "serving_default": lambda images: module.predicted(_each(images, views_of_images, shape)),
        # the gallery's call: the gate's embedding in the same pass
        "serve_encoded": lambda encoded: module.predicted(
            _each(encoded, views_of_encoded, shape), embedding=True
        ),
        "embed": lambda images: {"embedding": module.embed(_each(images, views_of_images, shape))},
        "explain": explain,
    }
    inputs = {"serve_encoded": tf.TensorSpec([None], tf.string, name="encoded")}
    functions = {
        name: _signature(fn, input_signature=[inputs.get(name, images)])
        for name, fn in signatures.items()
    }
    return module, {name: f.get_concrete_function() for name, f in functions.items()}


def _tflite_signatures(fns: ModelFunctions) -> tuple[tf.Module, dict]:
    data = fns.info["data"]
    source = tflite_input_size(data)
    module = _Converted(fns, PLATFORMS["tflite"])
    views, normalize = fixed_size_views(data), pp.NORMALIZATIONS[data.normalization]
    images = tf.TensorSpec([None, source, source, 3], tf.uint8, name="images")
    normalized_views = lambda images: normalize(views(images))
    resized_whole = fixed_size_whole(data)  # its matrix computed here, outside the graph
    whole = lambda images: normalize(resized_whole(images))
    signatures = {
        # TFLite has no string outputs here: the names and the period's rule are in export.json
        "serving_default": lambda images: module.predicted(normalized_views(images), False),
        "embed": lambda images: {"embedding": module.embed(normalized_views(images))},
        "explain": lambda images: {
            k: v
            for k, v in module.explained(normalized_views(images), whole(images)).items()
            if k != "classes"  # TFLite has no string outputs here; names are in export.json
        },
    }
    functions = {name: _signature(fn, input_signature=[images]) for name, fn in signatures.items()}
    return module, {name: f.get_concrete_function() for name, f in functions.items()}


def _tflite_bytes(workdir, module, signatures) -> bytes:
    with tempfile.TemporaryDirectory() as staged:
        tf.saved_model.save(module, staged, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            staged, signature_keys=list(signatures)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            return converter.convert()
        except Exception as e:  # the converter's errors are long; keep their first line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"{workdir}: TFLite conversion failed: {first}") from e


def _spec(tensor) -> str:
    """ "uint8 [N, H, W, 3]": unknown dimensions named N, H, W in their order."""
    names = iter("NHW")
    dims = ", ".join(next(names, "?") if d is None else str(d) for d in tensor.shape.as_list())
    return f"{tensor.dtype.name} [{dims}]"


def describe_signatures(signatures: dict) -> dict:
    """{signature: {"inputs": {name: "dtype [shape]"}, "outputs": {...}}} of concrete functions."""
    found = {}
    for name, fn in signatures.items():
        args, kwargs = fn.structured_input_signature
        inputs = {t.name: _spec(t) for t in [*args, *kwargs.values()]}
        outputs = {key: _spec(t) for key, t in fn.structured_outputs.items()}
        found[name] = {"inputs": inputs, "outputs": outputs}
    return found


def export(
    workdir, output, fmt: str = "savedmodel", checkpoint: str = "best", top_k: int = TOP_K
) -> dict:
    """Writes the run (or CV bag) at `workdir` to `output` in `fmt` (FORMATS) with export.json;
    returns what export.json holds."""
    if fmt not in FORMATS:
        raise ExportError(f"export format {fmt!r} is not one of {FORMATS}")
    workdir, output = pathlib.Path(workdir), pathlib.Path(output)
    fns = model_functions(workdir, checkpoint, CONV_IMPL[fmt], top_k)
    info, data = fns.info, fns.info["data"]
    if fmt == "savedmodel":
        module, signatures = _savedmodel_signatures(fns)
        output.mkdir(parents=True, exist_ok=True)
        tf.saved_model.save(module, str(output), signatures=signatures)
    else:
        module, signatures = _tflite_signatures(fns)
        converted = _tflite_bytes(workdir, module, signatures)
        output.mkdir(parents=True, exist_ok=True)
        (output / TFLITE_FILE).write_bytes(converted)
    size = int(data.image_size)
    input_size = tflite_input_size(data) if fmt == "tflite" else None
    record = dict(
        format=fmt,
        version=int(time.time()),  # TF Serving's model version: a number that grows
        classes=info["classes"],
        multi_label=info["multi_label"],
        signatures=describe_signatures(signatures),
        input=(
            "images: uint8 RGB of any size (resized inside with antialiasing), or encoded JPEG/PNG"
            if fmt == "savedmodel"
            else f"images: uint8 RGB at {input_size} x {input_size}, resized by the application "
            "with antialiasing; the views are computed inside"
        ),
        image_size=size,
        input_size=input_size,
        views=data.views,
        crop_fraction=float(data.crop_fraction),
        normalization=data.normalization,
        calibrated=info["calibrated"],
        uncertain_below=info["uncertain_below"],
        top_k=info["top_k"],
        embedding_dimensions=info["embedding_dimensions"],
        era=info["era"],
        synthetic=info["synthetic"],
        source=dict(workdir=str(workdir), checkpoint=checkpoint, steps=info["steps"]),
        platforms=list(PLATFORMS[fmt]),
        convolutions=CONVOLUTIONS[fmt],
        versions=dict(
            artjax=importlib.metadata.version("artjax"),
            jax=jax.__version__,
            tensorflow=tf.__version__,
        ),
    )
    record.update(_outside_the_graph(workdir, output))
    (output / EXPORT_FILE).write_text(json.dumps(record, indent=2))
    return record


def _outside_the_graph(workdir: pathlib.Path, output: pathlib.Path) -> dict:
    """What runs beside the model, not in its graph: finding and straightening the painting
    (OpenCV, `artjax.finder`, with the run's `finder` settings) and the "not a painting" gate
    (NumPy, `artjax.gate`: the run's gate.npz, copied beside the model where it has one)."""
    first = (
        checkpointing.fold_workdirs(workdir)[0] if checkpointing.is_cv_workdir(workdir) else workdir
    )
    config = configs.from_record(checkpointing.read_run(first)["config"])
    found_gate = gate.load_if_any(workdir)
    if found_gate is not None:
        shutil.copyfile(workdir / gate.GATE_FILE, output / gate.GATE_FILE)
    return dict(
        finder=config.finder.to_dict(),
        gate=None if found_gate is None else dict(found_gate.summary(), file=gate.GATE_FILE),
        outside_graph=dict(
            finder=(
                "before the model: artjax.finder.painting_bytes(encoded, finder) gives the bytes "
                "to judge (the straightened painting as PNG, or the upload unchanged where no "
                "outline is found) and the outline's corners in the upload's pixels; `finder` is "
                "this record's settings (ml_collections.ConfigDict(record['finder']))"
            ),
            gate=(
                "after the model: artjax.gate.Gate.load(export_dir).distances(embed(judged)) > "
                "threshold means the image does not look like a painting (embed: this export's "
                "`embed` signature on the judged image, or the `embedding` that serve_encoded "
                "gives with its probabilities)"
                if found_gate is not None
                else "no gate: fit one with python -m artjax.fit_gate, then export again"
            ),
        ),
    )
