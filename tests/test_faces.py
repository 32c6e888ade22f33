"""Face detection and cropping with real dlib on the sample videos; box geometry by property."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.faces import (
    DetectorConfig,
    FaceBox,
    crop_face,
    enlarged_square_box,
    make_detector,
    resize_square,
)
from model.mtcnn import WEIGHT_SHA256, WeightsError, check_weights, hog_convention
from model.video import SamplingConfig, read_sampled_frames
from support.video_factory import grace_hopper_rgb


@pytest.fixture(scope="session")
def default_detector():
    return make_detector(DetectorConfig())


@pytest.fixture(scope="session")
def sample_detections(sample_videos, default_detector):
    """(video, frame index, frame shape, detections) for every 20th frame of every sample."""
    rows = []
    for video in sample_videos:
        _, frames = read_sampled_frames(video.path, SamplingConfig.exactly_every(20))
        for number, frame in enumerate(frames):
            detections = default_detector.detect(frame.rgb, number)
            rows.append((video, frame.index, frame.rgb.shape, detections))
    return rows


def test_faces_found_exactly_where_the_labels_say(sample_detections):
    disagreements = [
        (video.name, index, len(detections))
        for video, index, _, detections in sample_detections
        if bool(detections) != (index in video.face_frames)
    ]
    assert not disagreements, f"face / no face differs from labels.csv: {disagreements}"


def test_boxes_lie_inside_the_frame_and_are_ranked(sample_detections):
    for video, index, (height, width, _), detections in sample_detections:
        for detection in detections:
            box = detection.box
            assert 0 <= box.x0 < box.x1 <= width, (video.name, index, box)
            assert 0 <= box.y0 < box.y1 <= height, (video.name, index, box)
            assert box.width >= 20 and box.height >= 20
        # The fast pass's faces first, best first; then the second look's, best first.
        searches = [d.found_by for d in detections]
        assert searches == sorted(searches, key=lambda name: name != "dlib_hog")
        for search in set(searches):
            scores = [d.score for d in detections if d.found_by == search]
            assert scores == sorted(scores, reverse=True)


def test_group_photo_gives_several_faces(sample_detections):
    counts = [len(d) for v, _, _, d in sample_detections if v.name == "a_still_multi_face.mp4"]
    assert counts and min(counts) >= 3, counts


def test_boxes_map_back_to_source_pixels(one_face_video):
    """Detecting on a 2x upscaled frame (searched at 640 px) gives boxes 2x as large."""
    _, frames = read_sampled_frames(one_face_video.path, SamplingConfig(num_frames=1))
    frame = frames[0].rgb  # 640 x 360: searched as is
    doubled = cv2.resize(frame, (frame.shape[1] * 2, frame.shape[0] * 2))
    # upsample 1 on both: its finer pyramid makes the box sizes comparable to a few pixels.
    detector = make_detector(DetectorConfig(detect_width=640, upsample=1, retry_with=None))
    [small] = detector.detect(frame)[:1]
    [large] = detector.detect(doubled)[:1]
    for small_edge, large_edge in zip(small.box.as_list(), large.box.as_list(), strict=True):
        assert large_edge == pytest.approx(2 * small_edge, abs=4)


def test_a_frame_with_only_small_faces_is_searched_again_upsampled(one_face_video):
    """The face shrunk to ~45 px of a 640 px frame: too small for upsample 0 (~80 px window)."""
    _, frames = read_sampled_frames(one_face_video.path, SamplingConfig(num_frames=1))
    frame = frames[0].rgb  # 640 x 360
    [face] = make_detector(DetectorConfig(max_faces=1)).detect(frame)
    shrink = 45 / face.box.width
    small = cv2.resize(frame, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    canvas = np.zeros_like(frame)
    canvas[: small.shape[0], : small.shape[1]] = small
    assert make_detector(DetectorConfig(upsample=0, retry_with=None)).detect(canvas) == []
    [found] = make_detector(DetectorConfig(upsample=0, retry_with="hog")).detect(canvas)
    assert found.box.width == pytest.approx(45, abs=12)


def test_max_faces_keeps_the_best(sample_videos):
    group = next(v for v in sample_videos if v.name == "a_still_multi_face.mp4")
    _, frames = read_sampled_frames(group.path, SamplingConfig(num_frames=1))
    best_two = make_detector(DetectorConfig(max_faces=2)).detect(frames[0].rgb)
    everyone = make_detector(DetectorConfig()).detect(frames[0].rgb)
    assert len(best_two) == 2
    assert best_two == everyone[:2]


def test_a_small_face_beside_a_larger_one_is_searched_for_again(one_face_video):
    """A ~80 px face (found by the fast pass, under retry_below_px) and a ~45 px one (too small
    for it) in one 640 px frame that is not a `retry_every` frame: the second look adds the
    small face, by MTCNN or by HOG upsampled, and keeps the fast pass's box for the larger one,
    so crops of faces found before do not move."""
    _, frames = read_sampled_frames(one_face_video.path, SamplingConfig(num_frames=1))
    frame = frames[0].rgb  # 640 x 360
    [face] = make_detector(DetectorConfig(max_faces=1)).detect(frame)
    canvas = np.zeros_like(frame)
    for width, left in ((80, 0), (45, 400)):
        shrink = width / face.box.width
        copy = cv2.resize(frame, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        canvas[: copy.shape[0], left : left + copy.shape[1]] = copy[:, : 640 - left]
    fast_only = make_detector(DetectorConfig(retry_below_px=None)).detect(canvas, frame_number=1)
    assert len(fast_only) == 1 and fast_only[0].box.width < 100
    for second_look, found_by in (("mtcnn", "mtcnn"), ("hog", "dlib_hog")):
        both = make_detector(DetectorConfig(retry_with=second_look)).detect(canvas, 1)
        assert [d.found_by for d in both] == ["dlib_hog", found_by]
        assert both[0] == fast_only[0]
        assert both[1].box.width == pytest.approx(45, abs=12)


def test_the_second_look_runs_on_every_nth_sampled_frame(one_face_video):
    """A frame whose only face is large: the second look runs on sampled frames 0, 8, 16...
    (where it would find a face HOG misses by pose), not between them."""
    _, frames = read_sampled_frames(one_face_video.path, SamplingConfig(num_frames=1))
    detector = make_detector(DetectorConfig(retry_every=8))
    for number in range(17):
        detector.detect(frames[0].rgb, number)
        assert detector.second_looks == 1 + number // 8


def test_mtcnn_boxes_are_redrawn_as_hog_squares():
    """MTCNN's tall box is redrawn as the square HOG draws (centre lower, side 0.936 x the
    geometric mean), so the 1.3x crop of a face only MTCNN finds matches training's crops."""
    square = hog_convention(FaceBox(100, 100, 200, 232))
    assert square.width == square.height == pytest.approx(0.936 * (100 * 132) ** 0.5, abs=1)
    assert (square.x0 + square.x1) / 2 == pytest.approx(150 + 0.005 * 100, abs=0.5)
    assert (square.y0 + square.y1) / 2 == pytest.approx(166 + 0.072 * 132, abs=0.5)


def test_frames_smaller_than_any_face_give_none():
    detector = make_detector(DetectorConfig())
    for side in (16, 39, 40):
        assert detector.detect(np.zeros((side, side, 3), np.uint8)) == []


def test_mtcnn_weights_are_checked_before_use(tmp_path):
    for name in WEIGHT_SHA256:
        (tmp_path / name).write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match=r"pnet\.pt has sha256"):
        check_weights(tmp_path)


def test_every_face_of_a_crowd_is_kept():
    portrait = cv2.resize(grace_hopper_rgb(), (256, 300), interpolation=cv2.INTER_AREA)
    crowd = np.vstack([np.hstack([portrait] * 5)] * 3)  # 15 faces, 1280 x 900
    assert len(make_detector(DetectorConfig()).detect(crowd)) == 15


def test_crop_is_the_model_input_size(one_face_video):
    _, frames = read_sampled_frames(one_face_video.path, SamplingConfig(num_frames=1))
    rgb = frames[0].rgb
    detection = make_detector(DetectorConfig()).detect(rgb)[0]
    crop_box = enlarged_square_box(detection.box, rgb.shape[1], rgb.shape[0], 1.3)
    crop = crop_face(rgb, crop_box, 299)
    assert crop.shape == (299, 299, 3) and crop.dtype == np.uint8
    assert crop_box.width == crop_box.height >= detection.box.width
    # The crop holds the face, large and central: the detector finds it again in the crop.
    [again] = make_detector(DetectorConfig(max_faces=1)).detect(crop)
    centre = ((again.box.x0 + again.box.x1) / 2, (again.box.y0 + again.box.y1) / 2)
    assert centre == pytest.approx((149.5, 149.5), abs=40)


def test_enlarged_box_matches_faceforensics_get_boundingbox():
    # A 100x80 face centred at (200, 150) in a 640x480 frame: side int(100 * 1.3) = 130.
    assert enlarged_square_box(FaceBox(150, 110, 250, 190), 640, 480, 1.3) == FaceBox(
        135, 85, 265, 215
    )
    # At the left edge the corner clamps to 0 and the side is kept.
    assert enlarged_square_box(FaceBox(0, 100, 100, 200), 640, 480, 1.3) == FaceBox(0, 85, 130, 215)
    # At the right edge the side shrinks to fit.
    assert enlarged_square_box(FaceBox(560, 100, 640, 180), 640, 480, 1.3) == FaceBox(
        548, 88, 640, 180
    )


@st.composite
def boxes_in_frames(draw):
    width = draw(st.integers(16, 4000))
    height = draw(st.integers(16, 4000))
    x0 = draw(st.integers(0, width - 2))
    y0 = draw(st.integers(0, height - 2))
    x1 = draw(st.integers(x0 + 1, width))
    y1 = draw(st.integers(y0 + 1, height))
    scale = draw(st.floats(1.0, 2.0))
    return FaceBox(x0, y0, x1, y1), width, height, scale


@given(boxes_in_frames())
def test_enlarged_box_is_a_square_inside_the_frame(case):
    box, width, height, scale = case
    crop = enlarged_square_box(box, width, height, scale)
    assert 0 <= crop.x0 < crop.x1 <= width
    assert 0 <= crop.y0 < crop.y1 <= height
    assert crop.width == crop.height
    assert crop.width <= max(1, int(max(box.width, box.height) * scale))


@given(boxes_in_frames())
def test_enlarged_box_keeps_its_full_size_away_from_the_edges(case):
    box, width, height, scale = case
    side = int(max(box.width, box.height) * scale)
    centre_x, centre_y = (box.x0 + box.x1) // 2, (box.y0 + box.y1) // 2
    fits = (
        centre_x - side // 2 >= 0
        and centre_y - side // 2 >= 0
        and centre_x - side // 2 + side <= width
        and centre_y - side // 2 + side <= height
    )
    if fits and side >= 1:
        crop = enlarged_square_box(box, width, height, scale)
        assert crop.width == side
        assert (crop.x0 + crop.x1) // 2 == pytest.approx(centre_x, abs=1)


def test_resize_square_shrinks_and_grows():
    image = np.random.default_rng(0).integers(0, 255, (500, 500, 3), dtype=np.uint8)
    assert resize_square(image, 299).shape == (299, 299, 3)
    assert resize_square(image[:100, :100], 299).shape == (299, 299, 3)
    np.testing.assert_array_equal(resize_square(image[:299, :299], 299), image[:299, :299])


def test_unknown_detector_is_refused():
    with pytest.raises(ValueError, match="unknown detector"):
        DetectorConfig(kind="yolo")
