"""The whole path video -> verdict on real sample videos, with a randomly initialised network
(no trained weights exist here; the scores are meaningless, the plumbing is what is tested)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.faces import DetectorConfig, make_detector
from model.network import ModelSettings, build_model
from model.pipeline import (
    NO_FACE,
    PipelineConfig,
    analyze_video,
    classify_crops,
    verdict_from_probabilities,
)


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
    assert set(verdict.timing_ms) == {"decode", "detect", "classify"}


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
