"""Frame- and video-level detection metrics, with sklearn doing the curve work."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

LOG_LOSS_EPS = 1e-15  # DFDC's clipping of predictions before the log
NO_FACE_SCORE = 0.5  # a video with no face counts as "don't know" in the video metrics


def binary_metrics(labels: Sequence[int], fake_probabilities: Sequence[float]) -> dict[str, float]:
    """AUC, accuracy at 0.5, log loss and EER; AUC and EER are NaN when one class is missing."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(fake_probabilities, dtype=np.float64)
    if len(y) == 0:
        raise ValueError("no scores to evaluate")
    clipped = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    log_loss = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    both_classes = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, p)) if both_classes else float("nan"),
        "accuracy": float(np.mean((p >= 0.5) == y)),
        "log_loss": float(log_loss),
        "eer": equal_error_rate(y, p) if both_classes else float("nan"),
    }


def equal_error_rate(labels: np.ndarray, fake_probabilities: np.ndarray) -> float:
    """Where the false-positive rate meets the false-negative rate on the ROC curve."""
    fpr, tpr, _ = roc_curve(labels, fake_probabilities)
    fnr = 1 - tpr
    crossing = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[crossing] + fnr[crossing]) / 2)
