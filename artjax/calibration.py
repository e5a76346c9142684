"""Calibrated probabilities and an "uncertain" flag: temperature scaling fitted on validation.

A run's probabilities are rescaled as softmax(log p / T) (sigmoid(logit p / T) for a multi-label
model); T minimizes the validation negative log-likelihood, so it changes confidence, never the
ranking. The "uncertain" threshold is the lowest top probability at which the validation
predictions at or above it are right at least `calibration.confident_accuracy` of the time.
Both are written to the workdir's `calibration.json` for the checkpoint they were fitted on; the
Predictor, `artjax.evaluate` and the CV report use them.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from scipy import optimize

CALIBRATION_FILE = "calibration.json"
# In a leave-artists-out CV workdir: the fit on every fold's held-out artists (artjax.crossval)
UNSEEN_ARTISTS_FILE = "unseen_artists_calibration.json"
_EPS = 1e-7


def _logits(probabilities, multi_label: bool, xp=np):
    # float64 where the array module has it (numpy); exported models compute in float32
    p = xp.asarray(probabilities, np.float64) if xp is np else probabilities
    p = xp.clip(p, _EPS, 1 - _EPS)
    return xp.log(p) - xp.log1p(-p) if multi_label else xp.log(p)


def scaled(probabilities, temperature: float, multi_label: bool, xp=np):
    """The probabilities of logits / temperature. `xp`: the array module (numpy, or jax.numpy
    inside an exported model)."""
    z = _logits(probabilities, multi_label, xp) / temperature
    if multi_label:
        return (1 / (1 + xp.exp(-z))).astype(np.float32)
    z = z - z.max(-1, keepdims=True)
    e = xp.exp(z)
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def apply(probabilities, fitted: dict | None, multi_label: bool, xp=np):
    """`probabilities` scaled by a fitted calibration's temperature; unchanged without one."""
    if fitted is None:
        return probabilities
    return scaled(probabilities, fitted["temperature"], multi_label, xp)


def nll(probabilities: np.ndarray, labels: np.ndarray, multi_label: bool) -> float:
    """Mean negative log-likelihood: of the true class, or the mean binary one over classes."""
    p = np.clip(np.asarray(probabilities, np.float64), _EPS, 1 - _EPS)
    if multi_label:
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray, multi_label: bool) -> float:
    """The temperature in [0.05, 20] that minimizes `nll` of the scaled probabilities."""
    found = optimize.minimize_scalar(
        lambda log_t: nll(scaled(probabilities, np.exp(log_t), multi_label), labels, multi_label),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
    )
    return float(np.exp(found.x))


def cross_fitted(parts, multi_label: bool) -> tuple[list[float], list[np.ndarray]]:
    """Each part's probabilities scaled by the temperature fitted on all the *other* parts
    (`parts`: [(probabilities, labels)], e.g. the folds of a leave-artists-out CV). No part's own
    labels choose its temperature, so the result estimates how a temperature fitted on held-out
    artists does on artists it has not seen. Returns (temperatures, scaled probabilities)."""
    if len(parts) < 2:
        raise ValueError("cross-fitting needs at least two parts")
    temperatures, found = [], []
    for k, (probabilities, _) in enumerate(parts):
        others = [p for j, p in enumerate(parts) if j != k]
        t = fit_temperature(
            np.concatenate([p for p, _ in others]),
            np.concatenate([y for _, y in others]),
            multi_label,
        )
        temperatures.append(t)
        found.append(scaled(probabilities, t, multi_label))
    return temperatures, found


def correct_top1(probabilities: np.ndarray, labels: np.ndarray, multi_label: bool) -> np.ndarray:
    """Whether each top prediction is right (for a multi-label model: one of the listed classes)."""
    top = probabilities.argmax(-1)
    if multi_label:
        return labels[np.arange(len(top)), top] > 0
    return top == labels


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, multi_label: bool, bins: int = 15
) -> float:
    """ECE of the top prediction: the mean over equal-width confidence bins of |accuracy -
    confidence|, weighted by the bin's share of the images."""
    found = reliability(probabilities, labels, multi_label, bins)
    return float(
        sum(b["images"] * abs(b["accuracy"] - b["confidence"]) for b in found if b["images"])
        / len(labels)
    )


def reliability(probabilities, labels, multi_label: bool, bins: int = 10) -> list[dict]:
    """Per confidence bin: its range, images, mean confidence and accuracy (a reliability
    diagram's points)."""
    confidence = probabilities.max(-1)
    correct = correct_top1(probabilities, labels, multi_label)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    found = []
    for b in range(bins):
        inside = which == b
        found.append(
            dict(
                low=float(edges[b]),
                high=float(edges[b + 1]),
                images=int(inside.sum()),
                confidence=float(confidence[inside].mean()) if inside.any() else None,
                accuracy=float(correct[inside].mean()) if inside.any() else None,
            )
        )
    return found


def uncertain_threshold(
    probabilities: np.ndarray, labels: np.ndarray, multi_label: bool, confident_accuracy: float
) -> float:
    """The lowest top probability t such that the predictions with top probability >= t are right
    at least `confident_accuracy` of the time (1.0 when no such t exists)."""
    confidence = probabilities.max(-1)
    correct = correct_top1(probabilities, labels, multi_label)
    order = np.argsort(-confidence)
    running = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    reaching = np.nonzero(running >= confident_accuracy)[0]
    if not len(reaching):
        return 1.0
    return float(confidence[order][reaching[-1]])


def fit(
    probabilities, labels, multi_label: bool, confident_accuracy: float, temperature=None
) -> dict:
    """Temperature and threshold from validation predictions, with what they did there. A given
    `temperature` (e.g. one fitted on unseen artists) is kept; only the threshold is fitted."""
    if temperature is None:
        temperature = fit_temperature(probabilities, labels, multi_label)
    calibrated = scaled(probabilities, temperature, multi_label)
    return dict(
        temperature=temperature,
        uncertain_below=uncertain_threshold(calibrated, labels, multi_label, confident_accuracy),
        confident_accuracy=confident_accuracy,
        images=len(labels),
        nll_before=nll(probabilities, labels, multi_label),
        nll_after=nll(calibrated, labels, multi_label),
        ece_before=expected_calibration_error(probabilities, labels, multi_label),
        ece_after=expected_calibration_error(calibrated, labels, multi_label),
    )


def save(workdir, step: int, checkpoint: str, found: dict) -> None:
    path = pathlib.Path(workdir) / CALIBRATION_FILE
    path.write_text(json.dumps(dict(step=int(step), checkpoint=checkpoint, **found), indent=2))


def load(workdir, step: int) -> dict | None:
    """The calibration fitted on `step`'s checkpoint, or None (none fitted, or for another step)."""
    path = pathlib.Path(workdir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    found = json.loads(path.read_text())
    return found if found.get("step") == int(step) else None


class CalibrationError(ValueError):
    """A calibration that cannot be used for this run."""


def save_unseen_artists(cv_workdir, classes, found: dict) -> None:
    path = pathlib.Path(cv_workdir) / UNSEEN_ARTISTS_FILE
    path.write_text(json.dumps(dict(classes=list(classes), **found), indent=2))


def load_unseen_artists(cv_workdir, classes) -> dict:
    """The temperature and threshold fitted on the held-out artists of a leave-artists-out CV
    (`config.calibration.from_cv`), checked to be for the same classes."""
    path = pathlib.Path(cv_workdir) / UNSEEN_ARTISTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: calibration.from_cv needs a finished `python -m artjax.cv "
            "--by artist` workdir"
        )
    found = json.loads(path.read_text())
    if found["classes"] != list(classes):
        raise CalibrationError(
            f"{path} is for the classes {found['classes']}, this run has {list(classes)}"
        )
    return found


def summary(probabilities, labels, multi_label: bool, fitted: dict | None) -> dict:
    """How calibrated `probabilities` are, before and (with `fitted`) after temperature scaling:
    NLL, ECE, reliability bins, and the share flagged uncertain with the accuracy of the rest."""
    found = dict(
        nll=nll(probabilities, labels, multi_label),
        ece=expected_calibration_error(probabilities, labels, multi_label),
        reliability=reliability(probabilities, labels, multi_label),
    )
    if fitted is None:
        return found
    calibrated = scaled(probabilities, fitted["temperature"], multi_label)
    confident = calibrated.max(-1) >= fitted["uncertain_below"]
    correct = correct_top1(calibrated, labels, multi_label)
    found.update(
        temperature=fitted["temperature"],
        uncertain_below=fitted["uncertain_below"],
        nll_calibrated=nll(calibrated, labels, multi_label),
        ece_calibrated=expected_calibration_error(calibrated, labels, multi_label),
        reliability_calibrated=reliability(calibrated, labels, multi_label),
        uncertain_share=float(1 - confident.mean()),
        accuracy_when_confident=float(correct[confident].mean()) if confident.any() else None,
    )
    return found
