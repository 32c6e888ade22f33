"""Temperature scaling and calibration error on scores whose calibration is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.network import ModelSettings, fake_probabilities_from_logits
from training.calibration import (
    expected_calibration_error,
    fit_temperature,
    reliability_figure,
    with_temperature,
)


def overconfident(seed: int = 0, count: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from calibrated probabilities, then reported with logits x3."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, count)
    labels = (rng.random(count) < 1 / (1 + np.exp(-logits))).astype(np.int64)
    return with_temperature(1 / (1 + np.exp(-logits)), 1 / 3), labels


def test_the_fitted_temperature_undoes_overconfidence_and_lowers_ece():
    probabilities, labels = overconfident()
    fitted = fit_temperature(probabilities, labels)
    assert fitted.temperature == pytest.approx(3.0, rel=0.15)
    assert fitted.ece_after < fitted.ece_before / 2
    assert "ECE" in fitted.describe("validation") and fitted.faces == len(labels)


def test_calibrated_scores_keep_their_order_and_their_threshold_side():
    probabilities, _ = overconfident()
    scaled = with_temperature(probabilities, 2.5)
    order = np.argsort(probabilities, kind="stable")
    assert np.all(np.diff(scaled[order]) >= 0)  # monotone: AUC unchanged
    assert np.array_equal(scaled >= 0.5, probabilities >= 0.5)


def test_ece_is_zero_for_calibrated_bins_and_large_for_confident_mistakes():
    assert expected_calibration_error(np.full(10, 0.3), np.array([1, 1, 1] + [0] * 7)) < 1e-12
    assert expected_calibration_error(np.full(4, 0.95), np.zeros(4)) == pytest.approx(0.95)


def test_one_class_cannot_be_fitted():
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature(np.array([0.2, 0.7]), np.array([1, 1]))


def test_the_checkpoint_temperature_is_applied_where_logits_become_probabilities():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    plain = fake_probabilities_from_logits(logits, ModelSettings())
    warm = fake_probabilities_from_logits(logits, ModelSettings(temperature=2.0))
    np.testing.assert_allclose(warm.numpy(), with_temperature(plain.numpy(), 2.0), atol=1e-6)


def test_the_reliability_plot_draws_both_curves():
    probabilities, labels = overconfident(count=500)
    curves = {"as trained": probabilities, "temperature 3": with_temperature(probabilities, 3.0)}
    axes = reliability_figure(labels, curves).axes[0]
    assert len(axes.lines) == 3  # the diagonal and one per set of scores
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend[1].startswith("as trained (ECE") and legend[2].startswith("temperature 3")
