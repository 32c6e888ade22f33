"""Who is in the video: the faces of the sampled frames linked into people, and when each
person's faces look manipulated.

A face continues the person whose last box (moved by its last velocity) it overlaps and whose
colours it keeps. A face that continues no one, or whose colours changed (a hard cut to someone
at the same place), is compared with everyone seen so far by dlib's 128-d face
descriptor (face_recognition_models' ResNet) and joins the nearest person within
`same_person_distance`, or starts a new one. Descriptors are computed only for those faces, so
a steady shot costs the overlap test alone.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import dlib
import numpy as np

from model.faces import HOG_SEARCH, FaceBox, box_in_crop, iou
from model.pipeline import Face, FrameFaces


@dataclass(frozen=True)
class TrackingConfig:
    """How faces are linked into people and when a person's span counts as flagged."""

    min_overlap: float = 0.3  # IoU with a person's predicted box to continue that person
    max_gap_s: float = 2.0  # beyond this since a person's last face, only descriptors link
    # Colour-histogram correlation below which an overlapping face is checked by descriptor
    # (one person a sampled frame apart: 0.95-1.0 on the sample videos, a swapped face
    # included; two people: 0.03-0.94), and below which the change is taken for a cut.
    min_colour_similarity: float = 0.95
    cut_colour_similarity: float = 0.5
    # Descriptor distances (dlib's rule of thumb: 0.6). Joining someone seen earlier, or
    # staying after a cut, takes a close match (two people of one sample photo were 0.49
    # apart); staying with the person one overlaps in similar colours only needs not to be
    # clearly someone else: a swap that flickers moves the descriptor ~0.6 (the sample swap).
    same_person_distance: float = 0.45
    cut_distance: float = 0.7
    # A segment: at least this many consecutive sampled faces of one person whose smoothed
    # fake probability is at or above the verdict's threshold.
    min_segment_faces: int = 2
    smoothing_faces: int = 3  # centred moving mean over a person's faces
    # false: overlap and colour alone, no dlib ResNet (loaded at start, ~0.1 s a descriptor):
    # a face that continues no one is a new person, never someone seen before a cut or gap.
    descriptors: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.min_overlap <= 1.0:
            raise ValueError(f"min_overlap must lie in (0, 1], got {self.min_overlap}")
        if self.min_segment_faces < 1 or self.smoothing_faces < 1:
            raise ValueError("min_segment_faces and smoothing_faces must be at least 1")


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    fake_probability: float  # mean smoothed probability over the segment's faces

    def as_json(self) -> dict[str, float]:
        return {
            "start_s": round(self.start_s, 4),
            "end_s": round(self.end_s, 4),
            "fake_probability": round(self.fake_probability, 6),
        }


@dataclass(eq=False)
class Person:
    """One person's faces, in time order (at most one per sampled frame)."""

    person_id: int
    faces: list[Face] = field(default_factory=list)

    def add(self, face: Face) -> None:
        face.person_id = self.person_id
        self.faces.append(face)

    @property
    def first_s(self) -> float:
        return self.faces[0].timestamp_s

    @property
    def last_s(self) -> float:
        return self.faces[-1].timestamp_s

    @property
    def representative(self) -> Face:
        """The face the detector was surest of."""
        # HOG's margins and MTCNN's probabilities are not on one scale: HOG's faces first.
        return max(self.faces, key=lambda face: (face.found_by == HOG_SEARCH, face.detector_score))

    def predicted_box(self) -> FaceBox:
        """The last box, moved as the last two moved (constant velocity)."""
        last = self.faces[-1].box
        if len(self.faces) < 2:
            return last
        before = self.faces[-2].box
        dx, dy = last.x0 - before.x0, last.y0 - before.y0
        return FaceBox(last.x0 + dx, last.y0 + dy, last.x1 + dx, last.y1 + dy)


class FaceDescriber:
    """dlib's face descriptor of a face crop (5-point alignment, ResNet, 128-d)."""

    def __init__(self) -> None:
        self._shapes, self._network = _dlib_models()
        self.computed = 0  # descriptors computed so far (what tracking cost)

    def __call__(self, face: Face) -> np.ndarray:
        box = box_in_crop(face.box, face.crop_box, face.crop.shape[0])
        rect = dlib.rectangle(box.x0, box.y0, box.x1 - 1, box.y1 - 1)
        crop = np.ascontiguousarray(face.crop)
        shape = self._shapes(crop, rect)
        self.computed += 1
        return np.asarray(self._network.compute_face_descriptor(crop, shape), dtype=np.float32)

    def cached(self, face: Face) -> np.ndarray:
        """The face's descriptor, computed once per face."""
        if face.descriptor is None:
            face.descriptor = self(face)
        return face.descriptor


@functools.cache
def _dlib_models() -> tuple[dlib.shape_predictor, dlib.face_recognition_model_v1]:
    import face_recognition_models  # ships the model files inside its wheel

    return (
        dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location()),
        dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location()),
    )


def link_people(
    frames: Sequence[FrameFaces], describe: FaceDescriber | None, config: TrackingConfig
) -> list[Person]:
    """The people of a video's sampled frames, in order of first appearance; `describe` None:
    without face descriptors (TrackingConfig.descriptors)."""
    people: list[Person] = []
    for frame in frames:
        taken: set[int] = set()  # person ids given a face of this frame
        placed: set[int] = set()  # indices of this frame's faces given a person
        for person, index in _overlaps(people, frame, config):
            face = frame.faces[index]
            if person.person_id in taken or index in placed:
                continue
            if not _continues(person.faces[-1], face, describe, config):
                continue  # a cut to someone else at the same place: re-identified below
            person.add(face)
            taken.add(person.person_id)
            placed.add(index)
        for index, face in enumerate(frame.faces):
            if index in placed:
                continue
            candidates = [p for p in people if p.person_id not in taken]
            person = _nearest(face, candidates, describe, config)
            if person is None:
                person = Person(len(people) + 1)
                people.append(person)
            person.add(face)
            taken.add(person.person_id)
    return people


def _overlaps(
    people: list[Person], frame: FrameFaces, config: TrackingConfig
) -> list[tuple[Person, int]]:
    """(person, face index) pairs that overlap enough, most overlapping first."""
    pairs = []
    for person in people:
        if frame.timestamp_s - person.last_s > config.max_gap_s:
            continue
        last, predicted = person.faces[-1].box, person.predicted_box()
        for index, face in enumerate(frame.faces):
            # The better of where it was and where it was heading: a detector's boxes jitter
            # by a tenth of their size between samples (HOG's scale steps), and constant
            # velocity extrapolates that jitter (a still face predicted off itself, then
            # re-identified by descriptor, ~0.1 s each, on the phone bench clip).
            overlap = max(iou(last, face.box), iou(predicted, face.box))
            if overlap >= config.min_overlap:
                pairs.append((overlap, person, index))
    pairs.sort(key=lambda pair: -pair[0])
    return [(person, index) for _, person, index in pairs]


def _nearest(
    face: Face, candidates: list[Person], describe: FaceDescriber | None, config: TrackingConfig
) -> Person | None:
    if not candidates or describe is None:
        return None
    best, best_distance = None, config.same_person_distance
    for person in candidates:
        distance = _distance(describe, person.representative, face)
        if distance < best_distance:
            best, best_distance = person, distance
    return best


def _continues(
    last: Face, face: Face, describe: FaceDescriber | None, config: TrackingConfig
) -> bool:
    """Whether an overlapping face is still the person whose last face was `last`: the same
    colours; or similar colours and a descriptor not clearly someone else's (a swap that
    flickers); or, after a cut (colours gone), a descriptor as close as a re-identification.
    Without descriptors: similar colours, unless they changed like a cut."""
    colour = _similar(last, face)
    if colour >= config.min_colour_similarity:
        return True
    if describe is None:
        return colour >= config.cut_colour_similarity
    limit = (
        config.cut_distance
        if colour >= config.cut_colour_similarity
        else config.same_person_distance
    )
    return _distance(describe, last, face) <= limit


def _distance(describe: FaceDescriber, a: Face, b: Face) -> float:
    return float(np.linalg.norm(describe.cached(a) - describe.cached(b)))


def _similar(a: Face, b: Face) -> float:
    """Correlation of the two faces' hue-saturation histograms (inside their boxes), in
    [-1, 1]: ~1 for one person a sampled frame apart, lower across people (measured in
    docs/performance.md), and blind to the box shifting a little."""
    return float(cv2.compareHist(_histogram(a), _histogram(b), cv2.HISTCMP_CORREL))


def _histogram(face: Face) -> np.ndarray:
    box = box_in_crop(face.box, face.crop_box, face.crop.shape[0])
    region = face.crop[max(0, box.y0) : box.y1, max(0, box.x0) : box.x1]
    hsv = cv2.cvtColor(np.ascontiguousarray(region), cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
    return cv2.normalize(histogram, histogram)


def segments(person: Person, threshold: float, config: TrackingConfig) -> list[Segment]:
    """Spans where the person's smoothed fake probability stays at or above `threshold` for
    at least `min_segment_faces` sampled faces."""
    probabilities = np.array([face.fake_probability for face in person.faces], np.float64)
    width = min(config.smoothing_faces, len(probabilities))
    padded = np.pad(probabilities, (width // 2, width - 1 - width // 2), mode="edge")
    smoothed = np.convolve(padded, np.ones(width) / width, mode="valid")
    found, start = [], None
    for index, flagged in enumerate([*(smoothed >= threshold), False]):
        if flagged and start is None:
            start = index
        elif not flagged and start is not None:
            if index - start >= config.min_segment_faces:
                span = person.faces[start:index]
                found.append(
                    Segment(
                        span[0].timestamp_s,
                        span[-1].timestamp_s,
                        float(smoothed[start:index].mean()),
                    )
                )
            start = None
    return found
