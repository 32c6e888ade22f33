"""The face recall set and how `benchmarks.faces` scores a detector against it."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from benchmarks.faces import (
    POOL_DATA,
    RECALL_SET,
    ConfigResult,
    TruthFace,
    TruthFrame,
    recall_frames,
    score_frame,
)
from model.faces import DetectorConfig, FaceBox, make_detector


def test_a_found_a_missed_a_small_and_a_false_face_are_each_counted_once():
    frame = TruthFrame(
        "made",
        "native",
        np.zeros((400, 600, 3), np.uint8),
        (
            TruthFace(FaceBox(10, 10, 110, 110), "frontal"),  # found, slightly off
            TruthFace(FaceBox(200, 10, 260, 70), "three-quarter"),  # missed
            TruthFace(FaceBox(400, 10, 430, 40), "frontal"),  # under 40 px: found, not counted
            TruthFace(FaceBox(10, 200, 90, 280), "partial"),  # found twice: one hit, one false
        ),
    )
    found = [
        FaceBox(15, 12, 112, 108),
        FaceBox(401, 11, 431, 41),
        FaceBox(12, 198, 92, 282),
        FaceBox(14, 204, 88, 278),
        FaceBox(500, 300, 580, 380),  # nothing there
    ]
    result = ConfigResult()
    score_frame(result, frame, found, min_px=40)
    assert (result.frontal_to_three_quarter.found, result.frontal_to_three_quarter.total) == (1, 2)
    assert (result.by_pose["partial"].found, result.by_pose["partial"].total) == (1, 1)
    assert (result.by_band["40-80px"].found, result.by_band["40-80px"].total) == (0, 1)
    assert (result.by_band["80-160px"].found, result.by_band["80-160px"].total) == (2, 2)
    assert result.detections == 4 and result.false_positives == 2  # the small face's is neither


@pytest.mark.skipif(not POOL_DATA.is_dir(), reason=f"the pool videos are not in {POOL_DATA}")
def test_every_box_of_the_recall_set_lies_on_its_frame_and_made_frames_keep_them():
    frames = list(recall_frames(RECALL_SET))
    kinds = {kind: [f for f in frames if f.kind == kind] for kind in ("native", "newscast")}
    assert len(kinds["native"]) == len(kinds["newscast"]) >= 14
    for native, newscast in zip(kinds["native"], kinds["newscast"], strict=True):
        assert native.faces and len(newscast.faces) == len(native.faces)
        assert newscast.rgb.shape[1] == 1920
    for frame in frames:
        height, width = frame.rgb.shape[:2]
        for face in frame.faces:
            box = face.box
            assert 0 <= box.x0 < box.x1 <= width and 0 <= box.y0 < box.y1 <= height, frame.name
    (mosaic,) = [f for f in frames if f.kind == "mosaic"]
    assert len(mosaic.faces) == 18


@pytest.mark.skipif(not POOL_DATA.is_dir(), reason=f"the pool videos are not in {POOL_DATA}")
def test_the_served_detector_finds_the_faces_of_the_recall_sets_own_frames():
    """Frontal to three-quarter faces of the 14 first frames as they are (the made frames are
    the benchmark's): on a sampled frame where the second look always runs (frame 0, every
    `retry_every`-th) at least 95% (measured: 36 of 36), between them at least 90% (34 of 36;
    HOG alone with its own retry: 33)."""
    natives = list(itertools.takewhile(lambda f: f.kind == "native", recall_frames(RECALL_SET)))
    min_px = json.loads(RECALL_SET.read_text())["min_face_px"]
    detector = make_detector(DetectorConfig())
    for frame_number, bar in ((0, 0.95), (1, 0.90)):
        result = ConfigResult()
        for frame in natives:
            found = [d.box for d in detector.detect(frame.rgb, frame_number)]
            score_frame(result, frame, found, min_px)
        wanted = result.frontal_to_three_quarter
        assert wanted.found >= bar * wanted.total, (frame_number, wanted.text())
        assert result.false_positives <= 2, frame_number
