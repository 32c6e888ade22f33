"""ROC curve and confusion matrix figures for MLflow and the README."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """One ROC curve per name -> (labels, fake probabilities); skips single-class curves."""
    figure, axes = plt.subplots(figsize=(5, 5))
    for name, (labels, probabilities) in curves.items():
        if len(np.unique(labels)) == 2:
            RocCurveDisplay.from_predictions(labels, probabilities, name=name, ax=axes)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set_title("ROC (validation)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def confusion_figure(labels: np.ndarray, predicted: np.ndarray, path: Path, title: str) -> Path:
    figure, axes = plt.subplots(figsize=(4, 4))
    ConfusionMatrixDisplay.from_predictions(
        labels, predicted, labels=[0, 1], display_labels=["real", "fake"], ax=axes, colorbar=False
    )
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
