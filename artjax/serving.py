"""A trained model for applications outside Python training code: a TensorFlow SavedModel or a
TFLite file with the preprocessing inside, converted with jax2tf.

The JAX part (`probability_fn`) is what `artjax.inference.Predictor` computes: each model's logits
(averaged over `data.views`), its probabilities, its calibrated temperature, averaged over a CV
workdir's fold models. The TensorFlow part is the evaluation preprocessing of `artjax.data`
(`input_pipeline.eval_ops`) itself, so an exported model and the Predictor see the same pixels.

SavedModel signatures (outputs: `probabilities` [N, C], `classes` [N, C] names, `top_class` [N]):
  serving_default   images: uint8 [N, H, W, 3], any H and W (resized inside, as in training)
  serve_encoded     encoded: string [N], JPEG or PNG bytes (decoded inside)
TFLite (one signature, `probabilities` only; class names in export.json):
  images: uint8 [N, S, S, 3] already at the model's size S (the application resizes);
  `data.views` other than "whole" cannot be exported to TFLite.
"""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import tensorflow as tf
from jax.experimental import jax2tf

from artjax import calibration, inference, steps
from artjax.data import input_pipeline as ip
from artjax.data import preprocess as pp

FORMATS = ("savedmodel", "tflite")
EXPORT_FILE = "export.json"
TFLITE_FILE = "model.tflite"
PLATFORMS = ("cpu",)  # where the serialized StableHLO runs (jax2tf native serialization)


class ExportError(ValueError):
    """A run that cannot be exported in the asked format."""


def probability_fn(workdir, checkpoint: str = "best"):
    """(fn, info): fn(inputs) -> probabilities [N, C] of normalized images [N, S, S, 3] (or views
    [N, V, S, S, 3]); info: the classes, data config and steps of the model(s)."""
    # standard convolutions: what TF and TFLite know
    loaded = inference.load_models(workdir, checkpoint, conv_impl="xla")
    config, run = loaded[0].config, loaded[0].run
    multi_label = bool(run.get("multi_label", False))
    loss = config.multi_label_loss

    def probabilities(inputs):
        found = []
        for m in loaded:
            logits = steps.view_mean_logits(m.model.apply, m.variables, inputs)
            p = steps.probabilities(logits, multi_label, loss)
            found.append(calibration.apply(p, m.calibration, multi_label, xp=jnp))
        return jnp.mean(jnp.stack(found), axis=0)

    info = dict(
        classes=list(run["classes"]),
        multi_label=multi_label,
        data=config.data,
        steps=[m.step for m in loaded],
        calibrated=all(m.calibration is not None for m in loaded),
        synthetic=bool(run["synthetic"]),
    )
    return probabilities, info


def _converted(fn):
    return tf.function(
        jax2tf.convert(
            fn,
            with_gradient=False,
            polymorphic_shapes=["(b, ...)"],
            native_serialization_platforms=PLATFORMS,
        ),
        autograph=False,
    )


def _savedmodel_module(fn, info) -> tf.Module:
    data = info["data"]
    ops = ip.eval_ops(data)  # decode, resize (or views), uint8, normalize
    shape = ip.eval_image_shape(data)
    module = tf.Module()
    module.probabilities = _converted(fn)
    classes = tf.constant(info["classes"])

    def outputs(inputs):
        p = module.probabilities(inputs)
        return {
            "probabilities": p,
            "classes": tf.broadcast_to(classes, tf.shape(p)),
            "top_class": tf.gather(classes, tf.argmax(p, axis=-1)),
        }

    def prepared(batch, preprocess):
        return tf.map_fn(
            lambda item: preprocess({"image": item})["image"],
            batch,
            fn_output_signature=tf.TensorSpec(shape, tf.float32),
        )

    module.serve_images = tf.function(
        lambda images: outputs(prepared(images, pp.compose(ops[1:]))),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
    )
    module.serve_encoded = tf.function(
        lambda encoded: outputs(prepared(encoded, pp.compose(ops))),
        input_signature=[tf.TensorSpec([None], tf.string, name="encoded")],
    )
    return module


def _tflite_module(fn, info) -> tf.Module:
    data = info["data"]
    if data.views != "whole":
        raise ExportError(
            f"data.views={data.views!r}: TFLite takes one image per painting; export this run "
            "as a savedmodel, or evaluate it with data.views=whole"
        )
    size = data.image_size
    normalize = pp.make_normalize(data.normalization)
    module = tf.Module()
    module.probabilities = _converted(fn)
    module.serve = tf.function(
        lambda images: {
            "probabilities": module.probabilities(normalize({"image": images})["image"])
        },
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")],
    )
    return module


def export(workdir, output, fmt: str = "savedmodel", checkpoint: str = "best") -> dict:
    """Writes the run (or CV bag) at `workdir` to `output` in `fmt` (FORMATS) with export.json;
    returns what export.json holds."""
    if fmt not in FORMATS:
        raise ExportError(f"export format {fmt!r} is not one of {FORMATS}")
    workdir, output = pathlib.Path(workdir), pathlib.Path(output)
    fn, info = probability_fn(workdir, checkpoint)
    data = info["data"]
    output.mkdir(parents=True, exist_ok=True)
    if fmt == "savedmodel":
        module = _savedmodel_module(fn, info)
        signatures = {
            "serving_default": module.serve_images.get_concrete_function(),
            "serve_encoded": module.serve_encoded.get_concrete_function(),
        }
        tf.saved_model.save(module, str(output), signatures=signatures)
        contract = {
            "serving_default": "images: uint8 [N, H, W, 3], RGB, any H and W",
            "serve_encoded": "encoded: string [N], JPEG or PNG bytes",
            "outputs": "probabilities float32 [N, C], classes string [N, C], top_class string [N]",
        }
    else:
        module = _tflite_module(fn, info)
        with tempfile.TemporaryDirectory() as staged:
            tf.saved_model.save(
                module, staged, signatures={"serving_default": module.serve.get_concrete_function()}
            )
            converter = tf.lite.TFLiteConverter.from_saved_model(staged)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            try:
                converted = converter.convert()
            except Exception as e:  # the converter's errors are long; keep their first line
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ExportError(f"{workdir}: TFLite conversion failed: {first}") from e
        (output / TFLITE_FILE).write_bytes(converted)
        size = data.image_size
        contract = {
            "serving_default": f"images: uint8 [N, {size}, {size}, 3], RGB, resized to {size} px "
            "with antialiasing by the application",
            "outputs": "probabilities float32 [N, C], in the order of `classes`",
        }
    record = dict(
        format=fmt,
        classes=info["classes"],
        multi_label=info["multi_label"],
        input=contract,
        image_size=int(data.image_size),
        views=data.views,
        normalization=data.normalization,
        calibrated=info["calibrated"],
        synthetic=info["synthetic"],
        source=dict(workdir=str(workdir), checkpoint=checkpoint, steps=info["steps"]),
        platforms=list(PLATFORMS),
        versions=dict(
            artjax=importlib.metadata.version("artjax"),
            jax=jax.__version__,
            tensorflow=tf.__version__,
        ),
    )
    (output / EXPORT_FILE).write_text(json.dumps(record, indent=2))
    return record
