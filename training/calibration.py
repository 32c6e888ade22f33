"""Calibrated scores: one temperature for the network's logits, fitted on validation faces by
likelihood (Guo et al. 2017, "On Calibration of Modern Neural Networks"), and the expected
calibration error (ECE) that says how far a probability can be read as a frequency."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar

EPSILON = 1e-6


@dataclass(frozen=True)
class Calibration:
    temperature: float
    ece_before: float
    ece_after: float
    faces: int

    def describe(self, where: str) -> str:
        return (
            f"temperature {self.temperature:.3f} fitted on {self.faces} {where} faces: "
            f"ECE {self.ece_before:.3f} -> {self.ece_after:.3f}"
        )


def with_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Two-class softmax probabilities recomputed with the logits divided by `temperature`."""
    p = np.clip(np.asarray(probabilities, np.float64), EPSILON, 1 - EPSILON)
    return 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / temperature))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> Calibration:
    """The temperature that minimises the faces' negative log likelihood (searched over
    0.05..20 on a log scale), with the ECE before and after."""
    labels = np.asarray(labels, np.float64)
    if len(labels) == 0 or labels.min() == labels.max():
        raise ValueError("fitting a temperature needs faces of both classes")

    def nll(log_temperature: float) -> float:
        p = np.clip(with_temperature(probabilities, np.exp(log_temperature)), EPSILON, 1 - EPSILON)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))

    fitted = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    temperature = float(np.exp(fitted.x))
    return Calibration(
        temperature,
        expected_calibration_error(probabilities, labels),
        expected_calibration_error(with_temperature(probabilities, temperature), labels),
        len(labels),
    )


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 10
) -> float:
    """Mean |fake rate - mean fake probability| over equal-width probability bins, weighted
    by the bins' share of the faces."""
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels, np.float64)
    which = np.minimum((probabilities * bins).astype(int), bins - 1)
    error = 0.0
    for index in range(bins):
        inside = which == index
        if inside.any():
            error += inside.mean() * abs(labels[inside].mean() - probabilities[inside].mean())
    return float(error)


def reliability_figure(labels: np.ndarray, curves: dict[str, np.ndarray], bins: int = 10) -> Figure:
    """Fake rate against mean probability per bin, one line per named set of scores (as
    trained, after a temperature)."""
    labels = np.asarray(labels, np.float64)
    figure = Figure(figsize=(4.5, 4.5))
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for name, scores in curves.items():
        scores = np.asarray(scores, np.float64)
        which = np.minimum((scores * bins).astype(int), bins - 1)
        filled = [i for i in range(bins) if (which == i).any()]
        axes.plot(
            [scores[which == i].mean() for i in filled],
            [labels[which == i].mean() for i in filled],
            marker="o",
            label=f"{name} (ECE {expected_calibration_error(scores, labels, bins):.3f})",
        )
    axes.set(xlabel="mean fake probability", ylabel="fraction fake", xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return figure
