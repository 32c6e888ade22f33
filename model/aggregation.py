"""Per-video fake probability from per-face ones, by a named rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class VerdictConfig:
    """How the per-face probabilities become the video's label."""

    # person_max: the most suspicious person with at least `min_person_faces` faces (each
    # person's probability the mean of their faces); or mean, confident, face_max over faces.
    aggregation: str = wire.PERSON_RULE
    # A video whose probability is at least this is labelled fake. None: the model's own
    # (its checkpoint's decision_threshold), which the service fills in.
    threshold: float | None = None
    # Closer to the threshold than this: uncertain, neither fake nor real (0: no band).
    uncertain_band: float = 0.1
    min_person_faces: int = 2  # fewer: the person counts only when no one has more

    def __post_init__(self) -> None:
        if self.aggregation not in wire.AGGREGATIONS:
            raise ValueError(
                f"unknown aggregation {self.aggregation!r}; choose one of {list(wire.AGGREGATIONS)}"
            )
        if not 0.0 <= self.uncertain_band <= 0.5:
            raise ValueError(f"uncertain_band must lie in [0, 0.5], got {self.uncertain_band}")
        if self.min_person_faces < 1:
            raise ValueError(f"min_person_faces must be at least 1, got {self.min_person_faces}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {self.threshold}")

    def with_model_threshold(self, decision_threshold: float) -> VerdictConfig:
        """This rule, its threshold the model's where it names none."""
        if self.threshold is not None:
            return self
        return dataclasses.replace(self, threshold=decision_threshold)

    def label(self, fake_probability: float | None) -> str:
        """fake, real, uncertain (inside the band around the threshold), or no_face."""
        if fake_probability is None:
            return wire.NO_FACE
        if self.threshold is None:
            raise ValueError("the verdict's threshold is the model's: take with_model_threshold")
        if abs(fake_probability - self.threshold) < self.uncertain_band:
            return wire.UNCERTAIN
        return wire.FAKE if fake_probability >= self.threshold else wire.REAL

    def reason(self, fake_probability: float | None) -> str:
        """Why the label is what it is, in plain words."""
        if fake_probability is None:
            return "no face was found in the sampled frames, so there is nothing to judge"
        low, high = self.threshold - self.uncertain_band, self.threshold + self.uncertain_band
        label = self.label(fake_probability)
        if label == wire.UNCERTAIN:
            return (
                f"the fake probability {fake_probability:.2f} is too close to the threshold "
                f"{self.threshold:.2f} to call (between {low:.2f} and {high:.2f})"
            )
        side = "at or above" if label == wire.FAKE else "below"
        edge = max(high, self.threshold) if label == wire.FAKE else low
        return f"the fake probability {fake_probability:.2f} is {side} {edge:.2f}"


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
