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
from model.pipeline import (
    NO_FACE,
    PipelineConfig,
    analyze_video,
    classify_crops,
    score_video,
    verdict_from_probabilities,
)
from tests.video_factory import encode_video, grace_hopper_rgb


@pytest.fixture(scope="module")
def settings():
    return ModelSettings()


@pytest.fixture(scope="module")
def network(settings):
    torch.manual_seed(0)
    return build_model(settings).eval()


@pytest.fixture(scope="module")
def detector():
    return make_detector(DetectorConfig())


def test_no_face_video_gives_the_no_face_outcome(no_face_video, network, settings, detector):
    verdict = analyze_video(no_face_video.path, network, settings, PipelineConfig(), detector)
    assert verdict.label == NO_FACE
    assert verdict.fake_probability is None
    assert verdict.faces.face_count == 0
    assert len(verdict.faces.frames) == len(range(0, no_face_video.frame_count, 20))
    assert "classify" in verdict.timing_ms


def test_face_video_verdict_is_built_from_its_faces(one_face_video, network, settings, detector):
    config = PipelineConfig(threshold=0.5, batch_size=4)
    verdict = analyze_video(one_face_video.path.read_bytes(), network, settings, config, detector)
    assert verdict.label in ("fake", "real")
    assert 0.0 <= verdict.fake_probability <= 1.0
    assert verdict.label == ("fake" if verdict.fake_probability >= 0.5 else "real")
    per_face = [p for frame in verdict.face_probabilities for p in frame]
    assert len(per_face) == verdict.faces.face_count == 6
    assert verdict.fake_probability == pytest.approx(np.mean(per_face), abs=1e-6)
    assert set(verdict.timing_ms) == {"decode", "detect", "classify", "total"}


def test_frames_without_a_face_do_not_count(sample_videos, network, settings, detector):
    video = next(v for v in sample_videos if v.name == "a_pyfeatman_face_to_noface.mp4")
    verdict = analyze_video(video.path, network, settings, PipelineConfig(), detector)
    with_faces = {f.frame_index for f in verdict.faces.frames if f.faces}
    assert with_faces == set(video.face_frames)
    assert verdict.fake_probability is not None


def test_batching_does_not_change_probabilities(one_face_video, network, settings, detector):
    verdict = analyze_video(one_face_video.path, network, settings, PipelineConfig(), detector)
    crops = verdict.faces.face_crops
    one_by_one = classify_crops(network, settings, crops, batch_size=1)
    all_at_once = classify_crops(network, settings, crops, batch_size=len(crops))
    np.testing.assert_allclose(one_by_one, all_at_once, atol=1e-5)


def test_probability_count_must_match_faces(one_face_video, network, settings, detector):
    verdict = analyze_video(one_face_video.path, network, settings, PipelineConfig(), detector)
    with pytest.raises(ValueError, match="probabilities for"):
        verdict_from_probabilities(verdict.faces, np.zeros(2, np.float32), PipelineConfig())


def test_pipeline_config_rejects_nonsense():
    with pytest.raises(ValueError, match="aggregation"):
        PipelineConfig(aggregation="vote")
    with pytest.raises(ValueError, match="threshold"):
        PipelineConfig(threshold=1.5)


STRAIGHTFORWARD = PipelineConfig(skip_unsampled_frames=False, overlap_stages=False)


def test_skipping_and_overlapping_give_the_straightforward_result(
    sample_videos, network, settings, detector
):
    names = ["a_fs_wolfgang_c1__grace_hopper.mp4", "a_still_multi_face.mp4"]
    for video in (v for v in sample_videos if v.name in names):
        expected, expected_p = score_video(video.path, network, settings, STRAIGHTFORWARD, detector)
        for config in (
            PipelineConfig(),
            dataclasses.replace(STRAIGHTFORWARD, overlap_stages=True),
            dataclasses.replace(STRAIGHTFORWARD, skip_unsampled_frames=True),
        ):
            faces, probabilities = score_video(video.path, network, settings, config, detector)
            assert faces.info == expected.info
            assert [(f.frame_index, f.timestamp_s) for f in faces.frames] == [
                (f.frame_index, f.timestamp_s) for f in expected.frames
            ]
            boxes = [[face.crop_box for face in f.faces] for f in faces.frames]
            assert boxes == [[face.crop_box for face in f.faces] for f in expected.frames]
            # Same crops in the same micro-batches: the same numbers, not merely close ones.
            np.testing.assert_array_equal(probabilities, expected_p)
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
        score_video(truncated, network, settings, PipelineConfig(), detector)
    assert _threads_settle(before), "the decoding thread outlived the request"


def test_a_failing_classifier_stops_the_decoding_thread(one_face_video, settings, detector):
    class Broken(torch.nn.Module):
        def forward(self, batch):
            raise RuntimeError("engine failed")

    before = threading.active_count()
    config = PipelineConfig(batch_size=1)
    with pytest.raises(RuntimeError, match="engine failed"):
        score_video(one_face_video.path, Broken(), settings, config, detector)
    assert _threads_settle(before), "the decoding thread outlived the request"
