"""ROC curve and confusion matrix figures for MLflow and the README."""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

from training.scoring import CropScores, video_scores


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


def figures(scores: CropScores, aggregation: str, folder: Path) -> list[Path]:
    video_labels, video_probs = video_scores(scores, aggregation)
    return [
        roc_figure(
            {
                "frames": (scores.labels, scores.probabilities),
                "videos": (video_labels, video_probs),
            },
            folder / "roc.png",
        ),
        confusion_figure(
            video_labels, (video_probs >= 0.5).astype(int), folder / "confusion.png", "videos"
        ),
    ]


def log_figures(run, scores: CropScores, aggregation: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for path in figures(scores, aggregation, Path(folder)):
            run.log_artifact(path, "plots")
