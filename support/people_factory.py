"""People with given face probabilities, and the scored video they make, for verdict tests."""

from __future__ import annotations

import numpy as np

from model.faces import FaceBox
from model.people import Person
from model.pipeline import Face, FrameFaces, VideoFaces


def person_with(probabilities: list[float], person_id: int, crop_size: int = 160) -> Person:
    """A person seen once a second, at the same place, with these face probabilities."""
    person = Person(person_id)
    for second, probability in enumerate(probabilities):
        box = FaceBox(100 * person_id, 0, 100 * person_id + 50, 50)
        crop = np.zeros((crop_size, crop_size, 3), np.uint8)
        person.add(Face(second, float(second), box, box, 1.0, crop, probability))
    return person


def video_faces(people: list[Person]) -> VideoFaces:
    """The frames those people's faces fall in, as the pipeline would return them scored."""
    frames: dict[int, list[Face]] = {}
    for person in people:
        for face in person.faces:
            frames.setdefault(face.frame_index, []).append(face)
    return VideoFaces(
        frames=[FrameFaces(i, float(i), found) for i, found in sorted(frames.items())]
    )
