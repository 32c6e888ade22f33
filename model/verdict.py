"""Scores -> verdict: each person's fake probability, label and flagged segments, and the
video's label, taken over people by default so one swapped face among many is not averaged
away."""

from __future__ import annotations

from dataclasses import dataclass, field

from model.aggregation import VerdictConfig, aggregate
from model.people import Person, Segment, TrackingConfig, segments
from model.pipeline import VideoFaces
from protocol.wire import PERSON_RULE


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
