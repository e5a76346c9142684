"""Temperature scaling, ECE and the "uncertain" threshold (artjax.calibration)."""

import numpy as np
import pytest

from artjax import calibration


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _overconfident(n=4000, classes=6, sharpen=3.0, seed=0):
    """Labels drawn from softmax(z) (so softmax(z) is calibrated) and a model that reports
    softmax(sharpen * z): right as often, but too sure."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=(n, classes))
    labels = np.array([rng.choice(classes, p=p) for p in _softmax(z)])
    return _softmax(sharpen * z).astype(np.float32), labels


def test_temperature_scaling_lowers_nll_on_a_miscalibrated_set():
    probabilities, labels = _overconfident()
    temperature = calibration.fit_temperature(probabilities, labels, multi_label=False)
    assert temperature == pytest.approx(3.0, rel=0.1)  # undoes the sharpening
    scaled = calibration.scaled(probabilities, temperature, multi_label=False)
    before = calibration.nll(probabilities, labels, False)
    after = calibration.nll(scaled, labels, False)
    assert after < before - 0.1
    assert calibration.expected_calibration_error(scaled, labels, False) < 0.03
    assert calibration.expected_calibration_error(probabilities, labels, False) > 0.1
    np.testing.assert_array_equal(scaled.argmax(-1), probabilities.argmax(-1))  # ranking kept


def test_multi_label_temperature_scaling_lowers_binary_nll():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=2.0, size=(3000, 5))
    targets = (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(np.float32)
    overconfident = (1 / (1 + np.exp(-2.5 * z))).astype(np.float32)
    temperature = calibration.fit_temperature(overconfident, targets, multi_label=True)
    assert temperature == pytest.approx(2.5, rel=0.1)
    scaled = calibration.scaled(overconfident, temperature, multi_label=True)
    assert calibration.nll(scaled, targets, True) < calibration.nll(overconfident, targets, True)


def test_ece_equals_a_hand_computation():
    top = np.array([0.65, 0.62, 0.64, 0.93, 0.99])
    probabilities = np.stack([top, 1 - top], -1)  # class 0 is every top prediction
    labels = np.array([0, 1, 0, 0, 0])  # the second is wrong
    # two bins: all five in [0.5, 1]: accuracy 4/5 against mean confidence 0.766
    assert calibration.expected_calibration_error(probabilities, labels, False, bins=2) == (
        pytest.approx(abs(4 / 5 - top.mean()))
    )
    # ten bins: [0.6, 0.7) holds three (2 right), [0.9, 1] two (both right)
    expected = 3 / 5 * abs(2 / 3 - top[:3].mean()) + 2 / 5 * abs(1 - top[3:].mean())
    assert calibration.expected_calibration_error(probabilities, labels, False, bins=10) == (
        pytest.approx(expected)
    )


def test_the_uncertain_threshold_keeps_the_confident_predictions_right_often_enough():
    confidence = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4])
    right = np.array([1, 1, 1, 0, 1, 0, 0, 0], bool)
    rest = (1 - confidence) / 2
    probabilities = np.stack([confidence, rest, rest], -1)  # class 0 is every top prediction
    labels = np.where(right, 0, 1)
    # top-k accuracies: 1, 1, 1, .75, .8, .667, .571, .5
    assert calibration.uncertain_threshold(probabilities, labels, False, 0.8) == 0.7
    assert calibration.uncertain_threshold(probabilities, labels, False, 0.99) == 0.85
    assert calibration.uncertain_threshold(probabilities, labels, False, 0.5) == 0.4
    never = np.zeros(8, int) + 1  # all wrong
    assert calibration.uncertain_threshold(probabilities, never, False, 0.5) == 1.0


def test_a_fit_and_its_summary_agree():
    probabilities, labels = _overconfident(n=2000, seed=3)
    fitted = calibration.fit(probabilities, labels, False, confident_accuracy=0.8)
    found = calibration.summary(probabilities, labels, False, fitted)
    assert found["ece_calibrated"] == pytest.approx(fitted["ece_after"])
    assert found["nll_calibrated"] == pytest.approx(fitted["nll_after"])
    assert found["accuracy_when_confident"] >= 0.8
    assert sum(b["images"] for b in found["reliability_calibrated"]) == len(labels)


def test_cross_fitting_scales_each_part_by_the_other_parts_temperature():
    parts = [_overconfident(n=1500, sharpen=3.0, seed=s) for s in range(4)]
    temperatures, crossed = calibration.cross_fitted(parts, multi_label=False)
    for k, (probabilities, _) in enumerate(parts):
        others = [p for j, p in enumerate(parts) if j != k]
        expected = calibration.fit_temperature(
            np.concatenate([p for p, _ in others]), np.concatenate([y for _, y in others]), False
        )
        assert temperatures[k] == pytest.approx(expected)
        np.testing.assert_allclose(
            crossed[k], calibration.scaled(probabilities, expected, False), atol=1e-7
        )
    assert temperatures == pytest.approx([3.0] * 4, rel=0.1)
    labels = np.concatenate([y for _, y in parts])
    assert calibration.expected_calibration_error(np.concatenate(crossed), labels, False) < 0.03
    # a part's own labels never choose its temperature
    shuffled = [(parts[0][0], np.roll(parts[0][1], 1))] + parts[1:]
    assert calibration.cross_fitted(shuffled, False)[0][0] == temperatures[0]
    with pytest.raises(ValueError, match="at least two"):
        calibration.cross_fitted(parts[:1], False)


def test_a_given_temperature_is_kept_and_only_the_threshold_fitted():
    probabilities, labels = _overconfident()
    fitted = calibration.fit(probabilities, labels, False, confident_accuracy=0.8, temperature=2.0)
    assert fitted["temperature"] == 2.0
    scaled = calibration.scaled(probabilities, 2.0, False)
    assert fitted["uncertain_below"] == calibration.uncertain_threshold(scaled, labels, False, 0.8)
    assert fitted["nll_after"] == pytest.approx(calibration.nll(scaled, labels, False))
