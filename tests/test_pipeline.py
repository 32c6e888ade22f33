"""The whole path video -> verdict on real sample videos, with a randomly initialised network
(no trained weights exist here; the scores are meaningless, the plumbing is what is tested)."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

from model.errors import VideoInputError
from model.faces import DetectorConfig, make_detector
from model.network import ModelSettings, build_model
from model.pipeline import classify_crops, score_video
from model.verdict import VerdictConfig, VideoVerdict, verdict
from model.video import SamplingConfig
from protocol.wire import NO_FACE
from support.video_factory import encode_video, grace_hopper_rgb


@pytest.fixture(scope="module")
def settings():
    return ModelSettings(input_size=160)  # the plumbing at a third of 299 px's arithmetic


@pytest.fixture(scope="module")
def network(settings):
    torch.manual_seed(0)
    return build_model(settings).eval()


@pytest.fixture(scope="module")
def detector():
    return make_detector(DetectorConfig())


def analyze(video, network, settings, detector, **engine):
    every_20th = SamplingConfig.exactly_every(20)
    faces = score_video(video, network, settings, every_20th, detector, 4, **engine)
    return verdict(faces, VerdictConfig(aggregation="mean", threshold=0.5))


def test_no_face_video_gives_the_no_face_outcome(no_face_video, network, settings, detector):
    scored = analyze(no_face_video.path, network, settings, detector)
    assert scored.label == NO_FACE
    assert scored.fake_probability is None
    assert scored.faces.face_count == 0
    assert len(scored.faces.frames) == len(range(0, no_face_video.frame_count, 20))
    assert "classify" in scored.timing_ms


def test_face_video_verdict_is_built_from_its_faces(one_face_video, network, settings, detector):
    scored = analyze(one_face_video.path.read_bytes(), network, settings, detector)
    assert scored.label in ("fake", "real", "uncertain")
    assert 0.0 <= scored.fake_probability <= 1.0
    assert scored.label == VerdictConfig(threshold=0.5).label(scored.fake_probability)
    per_face = [face.fake_probability for face in scored.faces.faces]
    assert len(per_face) == scored.faces.face_count == 6
    assert scored.fake_probability == pytest.approx(np.mean(per_face), abs=1e-6)
    assert set(scored.timing_ms) == {"decode", "detect", "classify", "total"}


def test_each_face_is_one_record_from_detection_to_json(
    one_face_video, network, settings, detector
):
    scored = analyze(one_face_video.path, network, settings, detector)
    for frame in scored.faces.frames:
        for face in frame.faces:
            assert (face.frame_index, face.timestamp_s) == (frame.frame_index, frame.timestamp_s)
            assert face.crop.shape == (settings.input_size, settings.input_size, 3)
            assert face.as_json() == {
                "box": face.box.as_list(),
                "crop_box": face.crop_box.as_list(),
                "detector_score": round(face.detector_score, 4),
                "found_by": "dlib_hog",
                "fake_probability": round(face.fake_probability, 6),
            }


def test_the_threshold_and_rule_make_the_label(one_face_video, network, settings, detector):
    faces = analyze(one_face_video.path, network, settings, detector).faces
    probability = verdict(faces, VerdictConfig(threshold=0.5)).fake_probability
    sharp = VerdictConfig(threshold=probability, uncertain_band=0.0)
    assert verdict(faces, sharp).label == "fake"
    above = VerdictConfig(threshold=min(1.0, probability + 1e-6), uncertain_band=0.0)
    assert verdict(faces, above).label == "real"
    banded = verdict(faces, VerdictConfig(threshold=probability, uncertain_band=0.05))
    assert banded.label == "uncertain"
    face_max = verdict(faces, VerdictConfig(aggregation="face_max", threshold=0.5))
    assert isinstance(face_max, VideoVerdict) and face_max.config.aggregation == "face_max"
    # The rule decides the number: with a 0.9 and a 0.1 face in every frame, the mean rule
    # says 0.5 and face_max (each frame's most suspicious face) 0.9.
    for frame in faces.frames:
        frame.faces[0].fake_probability = 0.9
        frame.faces.append(dataclasses.replace(frame.faces[0], fake_probability=0.1))
    for rule, expected in (("mean", 0.5), ("face_max", 0.9)):
        judged = verdict(faces, VerdictConfig(aggregation=rule, threshold=0.5))
        assert judged.fake_probability == pytest.approx(expected)


def test_batching_does_not_change_probabilities(one_face_video, network, settings, detector):
    crops = [
        face.crop for face in analyze(one_face_video.path, network, settings, detector).faces.faces
    ]
    one_by_one = classify_crops(network, settings, crops, batch_size=1)
    all_at_once = classify_crops(network, settings, crops, batch_size=len(crops))
    np.testing.assert_allclose(one_by_one, all_at_once, atol=1e-5)


def test_an_unscored_face_cannot_make_a_verdict(one_face_video, network, settings, detector):
    faces = analyze(one_face_video.path, network, settings, detector).faces
    faces.frames[0].faces[0].fake_probability = None
    with pytest.raises(ValueError, match="every face must be scored"):
        verdict(faces, VerdictConfig(threshold=0.5))


@pytest.mark.parametrize(
    ("probability", "label", "reason"),
    [
        (0.83, "fake", "the fake probability 0.83 is at or above 0.60"),
        (0.12, "real", "the fake probability 0.12 is below 0.40"),
        (0.55, "uncertain", "too close to the threshold 0.50 to call (between 0.40 and 0.60)"),
        (None, "no_face", "no face was found"),
    ],
)
def test_each_label_comes_with_its_reason_in_words(probability, label, reason):
    config = VerdictConfig(threshold=0.5, uncertain_band=0.1)
    assert config.label(probability) == label
    assert reason in config.reason(probability)


def test_the_verdict_config_rejects_nonsense():
    with pytest.raises(ValueError, match="aggregation"):
        VerdictConfig(aggregation="vote")
    with pytest.raises(ValueError, match="threshold"):
        VerdictConfig(threshold=1.5)
    with pytest.raises(ValueError, match="uncertain_band"):
        VerdictConfig(uncertain_band=0.7)


STRAIGHTFORWARD = {"skip_unsampled_frames": False, "overlap_stages": False}


@pytest.mark.integration  # ~8 s
def test_skipping_and_overlapping_give_the_straightforward_result(
    sample_videos, network, settings, detector
):
    names = ["a_still_multi_face.mp4"]  # B-frames, four faces a frame
    for video in (v for v in sample_videos if v.name in names):
        expected = analyze(video.path, network, settings, detector, **STRAIGHTFORWARD).faces
        for engine in (
            {},
            {**STRAIGHTFORWARD, "overlap_stages": True},
            {**STRAIGHTFORWARD, "skip_unsampled_frames": True},
        ):
            faces = analyze(video.path, network, settings, detector, **engine).faces
            assert faces.info == expected.info
            assert [(f.frame_index, f.timestamp_s) for f in faces.frames] == [
                (f.frame_index, f.timestamp_s) for f in expected.frames
            ]
            assert [f.crop_box for f in faces.faces] == [f.crop_box for f in expected.faces]
            # Same crops in the same micro-batches: the same numbers, not merely close ones.
            assert [f.fake_probability for f in faces.faces] == [
                f.fake_probability for f in expected.faces
            ]
            assert set(faces.timing_ms) == {"decode", "detect", "classify", "total"}


def _threads_settle(count: int) -> bool:
    for _ in range(50):
        if threading.active_count() <= count:
            return True
        threading.Event().wait(0.05)
    return False


def test_an_error_while_decoding_ahead_reaches_the_caller(network, settings, detector):
    frames = [np.roll(grace_hopper_rgb(), shift, axis=1) for shift in range(0, 120, 4)]
    data = encode_video(frames, faststart=True)
    truncated = data[: int(len(data) * 0.6)]
    before = threading.active_count()
    with pytest.raises(VideoInputError, match="truncated"):
        analyze(truncated, network, settings, detector)
    assert _threads_settle(before), "the decoding thread outlived the request"


def test_a_failing_classifier_stops_the_decoding_thread(one_face_video, settings, detector):
    class Broken(torch.nn.Module):
        def forward(self, batch):
            raise RuntimeError("engine failed")

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="engine failed"):
        score_video(one_face_video.path, Broken(), settings, SamplingConfig(), detector, 1)
    assert _threads_settle(before), "the decoding thread outlived the request"
