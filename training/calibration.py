"""Calibrated scores: one temperature for the network's logits, fitted on validation faces by
likelihood (Guo et al. 2017, "On Calibration of Modern Neural Networks"), and the expected
calibration error (ECE) that says how far a probability can be read as a frequency."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar

from model.network import load_checkpoint, save_checkpoint
from model.verdict import person_logit

if TYPE_CHECKING:
    from training.scoring import CropScores

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


def calibrate(
    checkpoint: Path, scores: CropScores | None, recipe_temperature: float | None, run
) -> None:
    """Store a temperature in the checkpoint's settings: fitted on the kept checkpoint's
    validation faces (logged with the ECE before and after and a reliability plot), or,
    without validation faces, the recipe's from cross-validation."""
    if scores is not None:
        try:
            fitted = fit_temperature(scores.probabilities, scores.labels)
        except ValueError as error:
            print(f"train: not calibrated: {error}")
            return
        temperature, described = fitted.temperature, fitted.describe("validation")
        run.log_metrics(
            {"val_face_ece": fitted.ece_before, "val_face_ece_calibrated": fitted.ece_after},
            step=0,
        )
        curves = {
            "as trained": scores.probabilities,
            f"temperature {temperature:.2f}": with_temperature(scores.probabilities, temperature),
        }
        run.log_figure(reliability_figure(scores.labels, curves), "plots/reliability.png")
    elif recipe_temperature is not None:
        temperature = recipe_temperature
        described = (
            f"temperature {temperature:.3f} from cross-validating this recipe (make crossval: "
            "fitted on out-of-fold faces of held-out people, not on this model's)"
        )
    else:
        return
    network, settings = load_checkpoint(checkpoint)
    calibrated = dataclasses.replace(settings, temperature=temperature, calibration=described)
    save_checkpoint(network, calibrated, checkpoint)
    run.log_metrics({"calibration_temperature": temperature}, step=0)
    print(f"train: calibrated, {calibrated.calibration}")


def store_recipe_fits(
    checkpoint: Path,
    run,
    threshold: float | None,
    real_person_logit: tuple[float, float] | None,
) -> None:
    """What cross-validating the recipe fitted on held-out people, in the checkpoint's
    settings: the served threshold and real people's person-score spread (either may be None)."""
    if threshold is None and real_person_logit is None:
        return
    network, settings = load_checkpoint(checkpoint)
    if threshold is not None:
        settings = dataclasses.replace(settings, decision_threshold=threshold)
        run.log_metrics({"decision_threshold": threshold}, step=0)
        print(f"train: decision threshold {threshold} (the recipe's, from make crossval)")
    if real_person_logit is not None:
        settings = dataclasses.replace(settings, real_person_logit=tuple(real_person_logit))
        print(f"train: real people's person logits {real_person_logit} (from make crossval)")
    save_checkpoint(network, settings, checkpoint)


def fit_real_person_logit(probabilities: np.ndarray) -> tuple[float, float]:
    """Mean and spread of the logits of real people's person probabilities (people the model
    never saw): the null the server's crowd correction compares the most suspicious person to."""
    if len(probabilities) < 3:
        raise ValueError(
            f"fitting real people's scores needs 3 or more people, got {len(probabilities)}"
        )
    logits = np.array([person_logit(float(p)) for p in probabilities])
    return float(logits.mean()), float(logits.std(ddof=1))
