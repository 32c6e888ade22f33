"""Scores -> verdict: each person's fake probability, label and flagged segments, and the
video's label, taken over people by default so one swapped face among many is not averaged
away."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from statistics import NormalDist

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
    # person_max over several people: judge the most suspicious one against the most
    # suspicious of as many real people, not of one (the model's real_person_logit; a model
    # without it is not corrected). The highest of eight real faces is higher than one.
    crowd_correction: bool = True

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


@dataclass(frozen=True)
class CrowdCorrection:
    """How the video's probability was drawn from its most suspicious of several people."""

    people: int  # the people the rule counted
    person_probability: float  # the most suspicious one's own probability
    fake_probability: float  # what one person alone would need to score to be as unusual


def person_logit(probability: float) -> float:
    """A person probability's logit, the scale real people's scores are modelled on (the
    correction below, and its fit in training/calibration.py); clipped so 0 and 1 stay finite."""
    clipped = min(max(probability, 1e-9), 1 - 1e-9)
    return math.log(clipped / (1 - clipped))


def crowd_corrected(
    probability: float, people: int, real_person_logit: tuple[float, float]
) -> float:
    """The probability one person alone would need to be as unusual among real people as the
    most suspicious of `people` real people scoring `probability`: Sidak's correction for
    looking at several, with real people's logits taken as normal (`real_person_logit`: their
    mean and spread, fitted on people the model never saw). One person: unchanged."""
    if people <= 1:
        return probability
    mean, spread = real_person_logit
    standard = (person_logit(probability) - mean) / spread
    # Upper tails from erfc, exact where they are tiny: P(top of n > s) = 1 - (1 - P(one > s))^n.
    tail = min(0.5 * math.erfc(standard / math.sqrt(2)), 1 - 1e-16)
    if tail < 1e-300:  # beyond doubles: Mills' ratio gives z' = sqrt(z^2 - 2 ln n)
        alone = mean + spread * math.sqrt(standard**2 - 2 * math.log(people))
    else:
        crowd_tail = min(-math.expm1(people * math.log1p(-tail)), 1 - 1e-16)
        alone = mean + spread * -NormalDist().inv_cdf(crowd_tail)
    return 1 / (1 + math.exp(-alone))


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
    crowd: CrowdCorrection | None = None  # set when fake_probability was corrected for a crowd

    def reason(self) -> str:
        """Why the label is what it is, in plain words, the crowd correction included."""
        reason = self.config.reason(self.fake_probability)
        if self.crowd is None:
            return reason
        return (
            f"{reason}; the most suspicious of {self.crowd.people} people scores "
            f"{self.crowd.person_probability:.2f} on their own, as unusual among "
            f"{self.crowd.people} real people as {self.crowd.fake_probability:.2f} is for one"
        )

    @property
    def timing_ms(self) -> dict[str, float]:
        return self.faces.timing_ms


def verdict(
    faces: VideoFaces,
    config: VerdictConfig,
    people: list[Person] | None = None,
    tracking: TrackingConfig | None = None,
    real_person_logit: tuple[float, float] | None = None,
) -> VideoVerdict:
    """The video's label from its scored faces (and their people) by `config`'s rule;
    `real_person_logit` (the model's) corrects person_max for the number of people."""
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
    counted = counted_people(judged, config)
    suspect = max(counted, key=lambda p: p.fake_probability, default=None)
    crowd = None
    if config.aggregation == PERSON_RULE:
        fake_probability = None if suspect is None else suspect.fake_probability
        if people is None:  # no people linked: the faces alone
            fake_probability = aggregate(per_frame, "face_max")
        elif config.crowd_correction and real_person_logit and len(counted) > 1:
            corrected = crowd_corrected(fake_probability, len(counted), real_person_logit)
            crowd = CrowdCorrection(len(counted), fake_probability, corrected)
            fake_probability = corrected
    else:
        fake_probability = aggregate(per_frame, config.aggregation)
    return VideoVerdict(
        config.label(fake_probability), fake_probability, config, faces, judged, suspect, crowd
    )


def counted_people(judged: list[PersonVerdict], config: VerdictConfig) -> list[PersonVerdict]:
    """The people the person rule weighs: those with `min_person_faces`, else everyone."""
    return [p for p in judged if len(p.person.faces) >= config.min_person_faces] or judged
