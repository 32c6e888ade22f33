"""Scores -> verdict: each person's fake probability, label and flagged segments, and the
video's label, taken over people by default so one swapped face among many is not averaged
away."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from model.aggregation import aggregate
from model.people import Person, Segment, TrackingConfig, segments
from model.pipeline import VideoFaces
from protocol import wire
from protocol.wire import PERSON_RULE


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


@dataclass
class PersonVerdict:
    person: Person
    fake_probability: float
    label: str
    segments: list[Segment]


@dataclass
class VideoVerdict:
    """The per-video outcome, the people behind it, and the scored faces behind them."""

    label: str  # "fake", "real" or "no_face"
    fake_probability: float | None  # None exactly when label is "no_face"
    config: VerdictConfig
    faces: VideoFaces
    people: list[PersonVerdict] = field(default_factory=list)
    verdict_person: PersonVerdict | None = None  # the most suspicious person the rule counted

    @property
    def timing_ms(self) -> dict[str, float]:
        return self.faces.timing_ms


def verdict(
    faces: VideoFaces,
    config: VerdictConfig,
    people: list[Person] | None = None,
    tracking: TrackingConfig | None = None,
) -> VideoVerdict:
    """The video's label from its scored faces (and their people) by `config`'s rule."""
    per_frame = faces.frame_probabilities()
    if any(p is None for probabilities in per_frame for p in probabilities):
        raise ValueError("every face must be scored before the verdict")
    if config.threshold is None:
        raise ValueError("the verdict needs a threshold: take config.with_model_threshold(...)")
    tracking = tracking or TrackingConfig()
    face_rule = "mean" if config.aggregation == PERSON_RULE else config.aggregation
    judged = []
    for person in people or []:
        probability = aggregate([[face.fake_probability] for face in person.faces], face_rule)
        found = segments(person, config.threshold, tracking)
        # A flagged span is a manipulation however short: it is not averaged away by the rest.
        probability = max([probability, *(segment.fake_probability for segment in found)])
        judged.append(PersonVerdict(person, probability, config.label(probability), found))
    counted = [p for p in judged if len(p.person.faces) >= config.min_person_faces] or judged
    suspect = max(counted, key=lambda p: p.fake_probability, default=None)
    if config.aggregation == PERSON_RULE:
        fake_probability = None if suspect is None else suspect.fake_probability
        if people is None:  # no people linked: the faces alone
            fake_probability = aggregate(per_frame, "face_max")
    else:
        fake_probability = aggregate(per_frame, config.aggregation)
    return VideoVerdict(
        config.label(fake_probability), fake_probability, config, faces, judged, suspect
    )
