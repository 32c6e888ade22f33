"""The classifier engines give the verdicts of the plain torch network (not timed here: speed
is the benchmark's job)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from model.cpu import limit_library_threads
from model.faces import make_detector
from model.network import ModelSettings, build_model
from model.pipeline import PipelineConfig, classify_crops, extract_faces
from model.runtime import BASELINE_PATH, InferencePath, choose_path, prepare_classifier
from model.video import SamplingConfig


@pytest.fixture(scope="module")
def network_and_crops(one_face_video):
    torch.manual_seed(0)
    settings = ModelSettings(input_size=160)
    network = build_model(settings).eval()
    faces = extract_faces(
        one_face_video.path,
        SamplingConfig(num_frames=4),
        make_detector(PipelineConfig().detector),
        settings,
    )
    assert faces.face_count >= 3
    return network, settings, faces.face_crops


def test_auto_picks_bf16_only_with_native_bf16():
    assert choose_path("auto", frozenset({"avx2", "avx512f", "avx512_bf16"})).name == (
        "torch-bf16-cl"
    )
    assert choose_path("auto", frozenset({"avx2", "amx_bf16"})).precision == "bf16"
    assert choose_path("auto", frozenset({"avx2", "fma"})).name == "openvino-fp32"
    assert choose_path("auto", frozenset({"avx2"}), int8_available=True).name == "openvino-int8"
    assert choose_path("auto", frozenset({"amx_bf16"}), int8_available=True).precision == "bf16"
    assert choose_path("torch-fp32").runtime == "torch"
    with pytest.raises(ValueError, match="inference path must be"):
        choose_path("tensorrt")


@pytest.mark.parametrize(
    ("path", "tolerance"),
    [("torch-fp32-cl", 1e-4), ("openvino-fp32", 1e-4), ("torch-bf16-cl", 0.02)],
)
def test_every_path_gives_the_baseline_probabilities(network_and_crops, path, tolerance):
    network, settings, crops = network_and_crops
    baseline = classify_crops(
        prepare_classifier(network, settings, InferencePath(BASELINE_PATH), 2), settings, crops, 4
    )
    fast = classify_crops(
        prepare_classifier(network, settings, InferencePath(path), 2), settings, crops, 4
    )
    assert fast.shape == baseline.shape == (len(crops),)
    np.testing.assert_allclose(fast, baseline, atol=tolerance)


def test_openvino_follows_a_new_thread_count(network_and_crops):
    network, settings, crops = network_and_crops
    classifier = prepare_classifier(network, settings, InferencePath("openvino-fp32"), 2)
    before = classify_crops(classifier, settings, crops, 8)
    classifier.set_threads(1)
    np.testing.assert_allclose(classify_crops(classifier, settings, crops, 8), before, atol=1e-6)


def test_int8_path_without_an_int8_model_says_how_to_build_one(network_and_crops):
    network, settings, _ = network_and_crops
    with pytest.raises(ValueError, match="--int8-split"):
        prepare_classifier(network, settings, InferencePath("openvino-int8"), 2)


def test_a_worker_share_caps_torch_and_opencv_thread_pools():
    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        limit_library_threads(1)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
