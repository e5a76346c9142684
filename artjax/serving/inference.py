"""A trained model with its own preprocessing, for applications (one process, one device).

A cross-validation workdir (`artjax.cv`) gives the bag of its fold models: their probabilities
averaged.
"""

from __future__ import annotations

import functools
import io
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from PIL import Image

from artjax import calibration, checkpointing, era, finder, gate, models, steps, train_state
from artjax.data import input_pipeline as ip
from artjax.data import preprocess as pp


def readable_image(path) -> bytes:
    """The file's bytes as JPEG or PNG (other formats re-encoded); a ValueError naming it if it
    is not an image."""
    raw = pathlib.Path(path).read_bytes()
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            if im.format not in ("JPEG", "PNG"):
                buf = io.BytesIO()
                im.convert("RGB").save(buf, "PNG")
                raw = buf.getvalue()
    except Exception as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e
    return raw


class Prediction(NamedTuple):
    ranked: list  # [(style, probability)], best first
    listed: list  # a multi-label model's genres with probability >= 0.5
    uncertain: bool  # top probability below the calibrated threshold
    era_year: float | None = None  # the era head's estimate (models without one: None)
    period: str | None = None  # the estimate as a visitor reads it: "about 1870-1900"
    # the gate (`artjax.gate`; None without one): whether it looks like a painting, and why
    painting: bool | None = None
    painting_distance: float | None = None
    # the painting's outline found in the photo ((x, y) clockwise from top left; None: the
    # finder was off), and whether one was found (False: the whole image was judged)
    corners: list | None = None
    found_painting: bool | None = None


class LoadedModel(NamedTuple):
    config: object  # the run's ConfigDict
    run: dict  # run.json
    model: object  # the Flax module (no BatchNorm axis: one device)
    variables: dict  # params (+ batch_stats)
    calibration: dict | None  # calibration.json's fit for this checkpoint
    step: int


def load_models(workdir, checkpoint: str = "best", conv_impl: str | None = None):
    """The model of a workdir's checkpoint, or each fold model of a CV workdir, ready to apply.
    `conv_impl` overrides the run's `model.conv_impl` (same parameters either way)."""
    workdirs = (
        checkpointing.fold_workdirs(workdir)
        if checkpointing.is_cv_workdir(workdir)
        else [pathlib.Path(workdir)]
    )
    loaded = []
    for path in workdirs:
        config, run, state, step = train_state.load_run(path, checkpoint)
        model_config = config.model.copy_and_resolve_references()
        if conv_impl:
            model_config.conv_impl = conv_impl
        model = models.create_model(model_config, len(run["classes"]))
        variables = {"params": state.params}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
        loaded.append(
            LoadedModel(config, run, model, variables, calibration.load(path, step), int(step))
        )
    return loaded


def model_outputs(loaded: LoadedModel, cnn_head_input: bool = False):
    """(variables, images) -> (logits, era estimate or None, head input [b, D] or None) of one
    model: the backbone once for the heads and the head input (averaged over the views), which
    is the embedding's part. The CNN has no separable head input: its own is recorded in the same
    pass (`models.logits_and_head_inputs`) where asked (`cnn_head_input`: an export's embedding)."""
    model, with_era = loaded.model, loaded.config.model.era_head
    if not hasattr(model, "features"):

        def cnn_outputs(variables, images):
            if not cnn_head_input:
                return steps.view_mean_logits(model.apply, variables, images), None, None
            logits, head_input = models.logits_and_head_inputs(model, variables, images)
            return logits, None, head_input

        return cnn_outputs
    heads = functools.partial(model.apply, method="classify_with_era" if with_era else "classify")
    features_of = models.features_fn(model)

    def outputs(variables, images):
        features = features_of(variables, images, train=False)
        found = steps.view_mean_logits(heads, variables, features)
        logits, estimate = found if with_era else (found, None)
        head_input = model.apply(variables, features, method="head_input").astype(jnp.float32)
        if head_input.ndim == 3:  # views: their mean, as models.logits_and_head_inputs gives it
            head_input = head_input.mean(1)
        return logits, estimate, head_input

    return outputs


def _outputs_fn(loaded: LoadedModel):
    """`model_outputs` of images, jitted, with the model's own variables."""
    jitted = jax.jit(model_outputs(loaded))
    return lambda images: jitted(loaded.variables, images)


class Predictor:
    """Style probabilities of images from a workdir's checkpoint, or a CV workdir's bag."""

    def __init__(self, workdir, checkpoint: str = "best", find_painting: bool | None = None):
        loaded = load_models(workdir, checkpoint)
        # each model's (logits, era estimate or None) of a batch: the backbone runs once for both
        self._outputs = [_outputs_fn(m) for m in loaded]
        self.model_count = len(loaded)
        self.has_era = any(m.config.model.era_head for m in loaded)
        self._calibrations = [m.calibration for m in loaded]
        config, run, self.step = loaded[-1].config, loaded[-1].run, loaded[-1].step
        self.classes, self.synthetic = run["classes"], run["synthetic"]
        self.multi_label = bool(run.get("multi_label", False))
        # Calibrated when every model is; a bag flags "uncertain" below its models' mean threshold.
        self.calibrated = all(self._calibrations)
        self.uncertain_below = (
            float(np.mean([c["uncertain_below"] for c in self._calibrations]))
            if self.calibrated
            else None
        )
        self._loss = config.multi_label_loss
        self.period_span_years = config.era.span_years
        self._preprocess = pp.compose(ip.eval_ops(config.data))
        # finding the painting in a photo (default: the run's finder.enabled), and the gate
        self.finder = config.finder
        self.find_painting = config.finder.enabled if find_painting is None else find_painting
        self.gate = gate.load_if_any(workdir)

    def outputs_of(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """([N, C] probabilities, [N] era estimates in years or None) of preprocessed images
        [N, H, W, 3] (or their views [N, V, H, W, 3], whose outputs are averaged): the bag's mean
        probabilities, and the mean estimate of its models that have an era head."""
        probabilities, estimates, _ = self.all_outputs_of(images)
        return probabilities, estimates

    def all_outputs_of(self, images: np.ndarray):
        """`outputs_of`, and the [N, D] unit embeddings (the export's `embed`: the models' mean
        head input; None for the CNN)."""
        probabilities, estimates, inputs = [], [], []
        for outputs, fitted in zip(self._outputs, self._calibrations):
            logits, estimate, head_input = outputs(images)
            probs = np.asarray(steps.probabilities(logits, self.multi_label, self._loss))
            probabilities.append(calibration.apply(probs, fitted, self.multi_label))
            if estimate is not None:
                estimates.append(era.to_years(estimate))
            if head_input is not None:
                inputs.append(np.asarray(head_input))
        embeddings = gate.unit(np.mean(inputs, axis=0)) if inputs else None
        return (
            np.mean(probabilities, axis=0),
            (np.mean(estimates, 0) if estimates else None),
            embeddings,
        )

    def probabilities_of(self, images: np.ndarray) -> np.ndarray:
        """[N, C] probabilities of preprocessed images (`outputs_of`)."""
        return self.outputs_of(images)[0]

    def preprocess(self, encoded: bytes) -> np.ndarray:
        """JPEG or PNG bytes -> the model's input (its views where it has several)."""
        return np.asarray(self._preprocess({"image": tf.constant(encoded)})["image"])

    def probabilities(self, encoded: bytes) -> np.ndarray:
        return self.probabilities_of(self.preprocess(encoded)[None])[0]

    def predict_files(self, paths, batch_size: int = 32) -> tuple[np.ndarray, list, list]:
        """(probabilities [N, C] of the readable files, their paths, "path: why" of the others)."""
        probabilities, _, readable, errors = self.files_outputs(paths, batch_size)
        return probabilities, readable, errors

    def files_outputs(self, paths, batch_size: int = 32):
        """(probabilities [N, C], era estimates [N] in years or None, readable paths, "path: why"
        of the others) of image files."""
        found = self.files_looked_at(paths, batch_size)
        return found.probabilities, found.era_years, found.paths, found.errors

    def looked_at(self, encoded: bytes) -> finder.Looked:
        """What the model judges of JPEG or PNG bytes: the straightened painting where the finder
        is on and finds one, else the bytes as given."""
        if not self.find_painting:
            return finder.Looked(encoded, None, None)
        return finder.painting_bytes(encoded, self.finder)

    def files_looked_at(self, paths, batch_size: int = 32) -> "FilesOutputs":
        """The outputs of image files, each straightened where the finder finds a painting."""
        readable, images, errors, looks = [], [], [], []
        for path in paths:
            try:
                looked = self.looked_at(readable_image(path))
            except (ValueError, OSError) as e:
                errors.append(str(e) if str(path) in str(e) else f"{path}: {e}")
                continue
            readable.append(path)
            looks.append(looked.found)
            images.append(self.preprocess(looked.encoded))
        found = [
            self.all_outputs_of(np.stack(images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
        probabilities = (
            np.concatenate([p for p, _, _ in found])
            if found
            else np.zeros((0, len(self.classes)), np.float32)
        )
        estimates = None
        if self.has_era:
            estimates = np.concatenate([e for _, e, _ in found]) if found else np.zeros(0)
        distances = None
        if self.gate is not None and found:
            distances = self.gate.distances(np.concatenate([m for _, _, m in found]))
        return FilesOutputs(probabilities, estimates, readable, errors, looks, distances)

    def predict_file(self, path, top_k: int = 3) -> list[tuple[str, float]]:
        """[(style, probability)] best first; a file that is not an image is a ValueError naming
        it."""
        return self.describe_file(path, top_k).ranked

    def describe_file(self, path, top_k: int = 3) -> Prediction:
        """The top-k styles (calibrated probabilities where the run was calibrated), the listed
        genres of a multi-label model (probability >= 0.5), whether it is uncertain, the found
        outline and the gate's answer."""
        return self.describe_encoded(readable_image(path), top_k)

    def describe_encoded(self, encoded: bytes, top_k: int = 3) -> Prediction:
        looked = self.looked_at(encoded)
        probs, estimate, embedding = self.all_outputs_of(self.preprocess(looked.encoded)[None])
        found = self.describe(probs[0], None if estimate is None else float(estimate[0]), top_k)
        return self.with_looks(found, looked.found, embedding)

    def with_looks(self, found: Prediction, outline, embedding) -> Prediction:
        """`found` with the outline (None: the finder was off) and the gate's answer."""
        if outline is not None:
            found = found._replace(
                corners=np.round(outline.corners, 1).tolist(), found_painting=outline.found
            )
        if self.gate is not None and embedding is not None:
            distance = float(self.gate.distances(embedding)[0])
            found = found._replace(
                painting=distance <= self.gate.threshold, painting_distance=distance
            )
        return found

    def describe(self, probs, era_year: float | None = None, top_k: int = 3) -> Prediction:
        """A Prediction of one painting's probabilities [C] (and era estimate in years)."""
        order = np.argsort(-probs)[:top_k]
        ranked = [(self.classes[i], float(probs[i])) for i in order]
        listed = [c for c, p in zip(self.classes, probs) if p >= 0.5] if self.multi_label else []
        uncertain = self.uncertain_below is not None and ranked[0][1] < self.uncertain_below
        period = None if era_year is None else era.period_text(era_year, self.period_span_years)
        return Prediction(ranked, listed, uncertain, era_year, period)


class FilesOutputs(NamedTuple):
    probabilities: np.ndarray  # [N, C] of the readable files
    era_years: np.ndarray | None  # [N] (models with an era head)
    paths: list  # the readable files
    errors: list  # "path: why" of the others
    outlines: list  # finder.Found of each readable file (None: the finder was off)
    distances: np.ndarray | None  # [N] the gate's distances (None: no gate)
