"""Per-video fake probability from per-face ones, by a named rule."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from protocol import wire

# DFDC winner's confident strategy (selimsef/dfdc_deepfake_challenge, kernel_utils.py).
CONFIDENT_FAKE = 0.8
CONFIDENT_REAL = 0.2
CONFIDENT_MIN_FAKES = 11  # tuned there for ~32 frames; short clips fall back to the mean


def mean_rule(frame_face_probabilities: Sequence[Sequence[float]]) -> float:
    """Mean over every face in every frame (the seed's rule)."""
    return float(np.mean(_all_faces(frame_face_probabilities)))


def confident_rule(frame_face_probabilities: Sequence[Sequence[float]]) -> float:
    """Mean of the confident fakes when there are many, else of the confident reals when
    nearly all are, else the plain mean: a few strong fake faces are not averaged away."""
    probabilities = _all_faces(frame_face_probabilities)
    confident_fakes = probabilities[probabilities > CONFIDENT_FAKE]
    if (
        len(confident_fakes) > len(probabilities) // 2.5
        and len(confident_fakes) > CONFIDENT_MIN_FAKES
    ):
        return float(confident_fakes.mean())
    confident_reals = probabilities[probabilities < CONFIDENT_REAL]
    if len(confident_reals) > 0.9 * len(probabilities):
        return float(confident_reals.mean())
    return float(probabilities.mean())


def face_max_rule(frame_face_probabilities: Sequence[Sequence[float]]) -> float:
    """Most suspicious face of each frame, averaged over frames: one swapped face among
    several real ones is not diluted by them."""
    frame_maxima = [max(faces) for faces in frame_face_probabilities if len(faces)]
    if not frame_maxima:
        raise ValueError("no face probabilities to aggregate")
    return float(np.mean(frame_maxima))


# Rules over every face of a video, named by the wire protocol (which clients read too); its
# person rule is model/verdict.py's.
# The face rules' functions; wire.AGGREGATIONS names every rule, the person rule too.
FACE_RULE_FUNCTIONS = dict(
    zip(wire.FACE_RULES, (mean_rule, confident_rule, face_max_rule), strict=True)
)


def aggregate(
    frame_face_probabilities: Sequence[Sequence[float]], rule: str = "mean"
) -> float | None:
    """Video fake probability in [0, 1] by `rule`, or None when no frame had a face."""
    if rule not in FACE_RULE_FUNCTIONS:
        raise ValueError(f"unknown face rule {rule!r}; choose one of {sorted(FACE_RULE_FUNCTIONS)}")
    if not any(len(faces) for faces in frame_face_probabilities):
        return None
    return FACE_RULE_FUNCTIONS[rule](frame_face_probabilities)


def _all_faces(frame_face_probabilities: Sequence[Sequence[float]]) -> np.ndarray:
    flat = [p for faces in frame_face_probabilities for p in faces]
    if not flat:
        raise ValueError("no face probabilities to aggregate")
    return np.asarray(flat, dtype=np.float64)
