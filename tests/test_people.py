"""People: faces linked across sampled frames on real and generated videos, the video's verdict
taken over them, and the spans each one is flagged in."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import av
import numpy as np
import pytest

from model.faces import DetectorConfig, FaceBox, iou, make_detector
from model.network import ModelSettings
from model.people import FaceDescriber, TrackingConfig, link_people, segments
from model.pipeline import Face, FrameFaces, extract_faces
from model.verdict import VerdictConfig, crowd_corrected, verdict
from model.video import SamplingConfig
from support.people_factory import person_with, video_faces
from support.video_factory import encode_video

SETTINGS = ModelSettings(input_size=160)
TRACKING = TrackingConfig()


@pytest.fixture(scope="module")
def describe() -> FaceDescriber:
    return FaceDescriber()


def people_of(source, describe):
    every_20th = SamplingConfig.exactly_every(20)
    faces = extract_faces(source, every_20th, make_detector(DetectorConfig()), SETTINGS)
    return faces, link_people(faces.frames, describe, TRACKING)


def sample(sample_videos, name):
    return next(v for v in sample_videos if v.name == name)


def decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.parametrize("name", ["a_still_multi_face.mp4", "a_fs_still_multi_face__astronaut.mp4"])
def test_the_people_of_the_group_photo_are_stable_tracks(sample_videos, describe, name):
    """Five people; dlib's frontal HOG finds four of them in every sampled frame (at any
    upsampling; the fifth, turned away, never), the second look (MTCNN) the fifth, and the
    five are five tracks."""
    faces, people = people_of(sample(sample_videos, name).path, describe)
    sampled = [frame.frame_index for frame in faces.frames]
    assert {len(frame.faces) for frame in faces.frames} == {5}
    assert {face.found_by for face in faces.faces} == {"dlib_hog", "mtcnn"}
    assert len(people) == 5
    for person in people:
        assert [face.frame_index for face in person.faces] == sampled  # in every frame, once
        boxes = [face.box for face in person.faces]
        assert min(iou(a, b) for a, b in itertools.pairwise(boxes)) > 0.4  # smooth, no jumps
        assert {face.person_id for face in person.faces} == {person.person_id}
    assert [p.person_id for p in people] == [1, 2, 3, 4, 5]


def test_the_swapped_woman_stays_one_person_through_the_swap(sample_videos, describe):
    """The same places in the real and the swapped clip hold the same people: the swap, which
    moves her face descriptor by ~0.6, does not split her track."""
    _, real = people_of(sample(sample_videos, "a_still_multi_face.mp4").path, describe)
    _, fake = people_of(
        sample(sample_videos, "a_fs_still_multi_face__astronaut.mp4").path, describe
    )
    for person in fake:
        twin = max(real, key=lambda r: iou(r.faces[0].box, person.faces[0].box))
        assert iou(twin.faces[0].box, person.faces[0].box) > 0.5


def test_a_steady_shot_costs_no_descriptor(sample_videos, describe):
    before = describe.computed
    _, people = people_of(sample(sample_videos, "a_wolfgang_c1.mp4").path, describe)
    assert len(people) == 1 and describe.computed == before


def test_a_face_whose_box_jitters_stays_one_person_without_a_descriptor(describe):
    """The detector's boxes of one still face in the phone bench clip (benchmarks/footage.py):
    sized and placed a little differently each sample. Extrapolating that jitter as motion
    predicted the 11th box off the face (IoU 0.29); the face stays where it was."""
    boxes = [
        (840, 237, 1617, 1014), (984, 339, 1632, 987), (1011, 324, 1788, 1080),
        (984, 339, 1632, 987), (915, 411, 1563, 1059), (924, 324, 1701, 1080),
        (924, 408, 1701, 1080), (915, 411, 1563, 1059), (984, 270, 1632, 918),
        (1056, 411, 1704, 1059), (915, 339, 1563, 987), (915, 339, 1563, 987),
    ]  # fmt: skip
    crop = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    frames = []
    for index, corners in enumerate(boxes):
        box = FaceBox(*corners)
        frames.append(
            FrameFaces(
                20 * index, 0.66 * index, [Face(20 * index, 0.66 * index, box, box, 1.0, crop)]
            )
        )
    before = describe.computed
    people = link_people(frames, describe, TRACKING)
    assert [len(person.faces) for person in people] == [len(boxes)]
    assert describe.computed == before


def test_a_hard_cut_between_two_people_and_back_keeps_two_ids(sample_videos, describe):
    hopper = decoded(sample(sample_videos, "a_still_grace_hopper.mp4").path)
    astronaut = decoded(sample(sample_videos, "a_still_astronaut.mp4").path)
    video = encode_video(hopper[:40] + astronaut[40:80] + hopper[80:100])
    _, people = people_of(video, describe)
    by_frame = {face.frame_index: face.person_id for p in people for face in p.faces}
    assert len(people) == 2, [(p.person_id, [f.frame_index for f in p.faces]) for p in people]
    assert by_frame[0] == by_frame[20] == by_frame[80] != by_frame[40] == by_frame[60]


def test_without_descriptors_people_continue_by_place_and_colour_only(sample_videos):
    """TrackingConfig.descriptors false: no ResNet. The group photo's five tracks stand; after
    a hard cut and back the first person is not recognised: a third id, as documented."""
    _, group = people_of(sample(sample_videos, "a_still_multi_face.mp4").path, None)
    assert len(group) == 5
    hopper = decoded(sample(sample_videos, "a_still_grace_hopper.mp4").path)
    astronaut = decoded(sample(sample_videos, "a_still_astronaut.mp4").path)
    video = encode_video(hopper[:40] + astronaut[40:80] + hopper[80:100])
    _, people = people_of(video, None)
    by_frame = {face.frame_index: face.person_id for p in people for face in p.faces}
    assert len(people) == 3 and by_frame[0] == by_frame[20] != by_frame[40] == by_frame[60]
    assert by_frame[80] not in (by_frame[0], by_frame[40])


def test_a_swap_in_the_second_half_is_one_person_with_a_segment_there(sample_videos, describe):
    real = decoded(sample(sample_videos, "a_still_grace_hopper.mp4").path)
    fake = decoded(sample(sample_videos, "a_fs_still_grace_hopper__astronaut.mp4").path)
    faces, people = people_of(encode_video(real[:50] + fake[50:]), describe)
    assert len(people) == 1
    for face in faces.faces:  # what a detector that separates the swap would say
        face.fake_probability = 0.9 if face.frame_index >= 50 else 0.1
    scored = verdict(faces, VerdictConfig(threshold=0.5), people, TRACKING)
    [judged] = scored.people
    assert scored.verdict_person is judged and scored.label == "fake"
    [segment] = judged.segments
    assert segment.start_s == pytest.approx(60 / 25) and segment.end_s == pytest.approx(80 / 25)


def test_one_swapped_person_among_real_ones_makes_the_video_fake():
    people = [person_with([0.1] * 5, person_id) for person_id in (1, 2, 3)]
    people.append(person_with([0.9] * 5, 4))
    faces = video_faces(people)
    by_people = verdict(faces, VerdictConfig(threshold=0.5), people, TRACKING)
    assert by_people.label == "fake" and by_people.verdict_person.person.person_id == 4
    assert [len(p.segments) for p in by_people.people] == [0, 0, 0, 1]
    by_mean = verdict(faces, VerdictConfig(aggregation="mean", threshold=0.5), people, TRACKING)
    assert by_mean.label == "real" and by_mean.fake_probability == pytest.approx(0.3)


# Real people's person logits as a model might carry them: mean -0.2, spread 0.5.
REAL_PEOPLE = (-0.2, 0.5)


def test_the_crowd_correction_judges_the_top_of_n_people_against_n_real_people():
    assert crowd_corrected(0.7, 1, REAL_PEOPLE) == 0.7  # one person: as scored
    two, eight = crowd_corrected(0.7, 2, REAL_PEOPLE), crowd_corrected(0.7, 8, REAL_PEOPLE)
    assert 0.7 > two > eight  # the more people looked at, the less the top one says
    # The corrected score is the one whose one-person tail equals the n-person tail.
    standard = NormalDist(*REAL_PEOPLE)
    tail = 1 - standard.cdf(math.log(0.7 / 0.3))
    alone = math.log(eight / (1 - eight))
    assert 1 - standard.cdf(alone) == pytest.approx(1 - (1 - tail) ** 8, rel=1e-6)
    # Monotone in the top score, and far tails stay ordered instead of saturating.
    scores = [crowd_corrected(p, 6, REAL_PEOPLE) for p in (0, 0.3, 0.6, 0.9, 0.999, 1 - 1e-9, 1)]
    assert scores == sorted(scores) and len(set(scores)) == len(scores) - 1  # 0 and 1 clip
    assert all(0 <= score <= 1 for score in scores)


def test_a_group_of_real_people_is_not_fake_for_its_size_but_a_clear_swap_still_is():
    group = [person_with([0.58] * 5, person_id) for person_id in range(1, 9)]
    plain = verdict(video_faces(group), VerdictConfig(threshold=0.5), group, TRACKING)
    assert plain.label == "uncertain" and plain.crowd is None  # the model carries no null
    corrected = verdict(
        video_faces(group), VerdictConfig(threshold=0.5), group, TRACKING, REAL_PEOPLE
    )
    assert corrected.crowd.people == 8 and corrected.crowd.person_probability == 0.58
    assert corrected.fake_probability < 0.4 and corrected.label == "real"
    assert "most suspicious of 8 people scores 0.58" in corrected.reason()
    swapped = [*group[:7], person_with([0.97] * 5, 8)]
    judged = verdict(
        video_faces(swapped), VerdictConfig(threshold=0.5), swapped, TRACKING, REAL_PEOPLE
    )
    assert judged.label == "fake" and judged.verdict_person.person.person_id == 8
    # An operator can turn it off; one person is never corrected.
    off = VerdictConfig(threshold=0.5, crowd_correction=False)
    assert verdict(video_faces(group), off, group, TRACKING, REAL_PEOPLE).crowd is None
    one = VerdictConfig(threshold=0.5)
    alone = verdict(video_faces(group[:1]), one, group[:1], TRACKING, REAL_PEOPLE)
    assert alone.fake_probability == 0.58 and alone.crowd is None


def test_a_person_seen_too_rarely_does_not_decide_while_others_are_seen_more():
    people = [person_with([0.2] * 6, 1), person_with([0.95], 2)]
    scored = verdict(
        video_faces(people), VerdictConfig(min_person_faces=2, threshold=0.5), people, TRACKING
    )
    assert scored.verdict_person.person.person_id == 1 and scored.label == "real"


@pytest.mark.parametrize(
    ("probabilities", "spans"),
    [
        ([0.1, 0.1, 0.9, 0.9, 0.9, 0.9], [(2, 5)]),
        ([0.9, 0.1, 0.1, 0.1, 0.1, 0.1], []),  # one frame: smoothed away, and too short
        ([0.1] * 6, []),
        ([0.9] * 6, [(0, 5)]),
    ],
)
def test_segments_are_spans_of_the_smoothed_probability_over_the_threshold(probabilities, spans):
    person = person_with(probabilities, 1)
    found = segments(person, 0.5, TrackingConfig(smoothing_faces=1, min_segment_faces=2))
    assert [(s.start_s, s.end_s) for s in found] == [(float(a), float(b)) for a, b in spans]
    smoothed = segments(person, 0.5, TRACKING)
    assert all(0.5 <= s.fake_probability <= 1.0 for s in smoothed)


def test_iou():
    a = FaceBox(0, 0, 10, 10)
    assert iou(a, a) == 1.0 and iou(a, FaceBox(10, 10, 20, 20)) == 0.0
    assert iou(a, FaceBox(5, 0, 15, 10)) == pytest.approx(50 / 150)
