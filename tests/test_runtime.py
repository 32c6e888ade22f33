"""The classifier engines give the verdicts of the plain torch network (not timed here: speed
is the benchmark's job)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from model.cpu import cpu_flags, has_native_bf16, limit_library_threads
from model.faces import DetectorConfig, make_detector
from model.network import ModelSettings, build_model
from model.pipeline import classify_crops, extract_faces
from model.runtime import (
    BASELINE_PATH,
    InferencePath,
    candidate_paths,
    choose_classifier,
    prepare_classifier,
)
from model.tensors import crops_to_batch
from model.video import SamplingConfig


@pytest.fixture(scope="module")
def network_and_crops(one_face_video):
    torch.manual_seed(0)
    settings = ModelSettings(input_size=160)
    network = build_model(settings).eval()
    faces = extract_faces(
        one_face_video.path,
        SamplingConfig(num_frames=4),
        make_detector(DetectorConfig()),
        settings,
    )
    assert faces.face_count >= 3
    return network, settings, [face.crop for face in faces.faces]


def names(paths: tuple[InferencePath, ...]) -> list[str]:
    return [path.name for path in paths]


def test_auto_tries_bf16_only_with_native_bf16():
    avx2, avx512_bf16, amx = frozenset({"avx2", "fma"}), frozenset({"avx512_bf16"}), {"amx_bf16"}
    # Measured on this kind of CPU: one candidate, no timing at start.
    assert names(candidate_paths("auto", avx2)) == ["openvino-fp32"]
    assert names(candidate_paths("auto", avx2, int8_available=True)) == ["openvino-int8"]
    # Native bf16 (run on an Intel Xeon with AMX): the bf16 engines, and int8 when archived,
    # are timed at start.
    assert names(candidate_paths("auto", avx512_bf16)) == ["openvino-bf16", "torch-bf16-cl"]
    assert names(candidate_paths("auto", frozenset(amx), int8_available=True)) == [
        "openvino-int8",
        "openvino-bf16",
        "torch-bf16-cl",
    ]
    assert names(candidate_paths("torch-fp32")) == ["torch-fp32"]
    assert names(candidate_paths(" openvino-fp32, torch-fp32-cl,openvino-fp32")) == [
        "openvino-fp32",
        "torch-fp32-cl",
    ]
    for unknown in ("tensorrt", "openvino-fp32,onnx", ""):
        with pytest.raises(ValueError, match="inference path must be auto, one of"):
            candidate_paths(unknown)


@pytest.mark.parametrize(
    ("path", "tolerance"),
    # openvino-bf16 runs fp32 where bf16 is not native (then the tolerance is loose for it).
    [
        ("torch-fp32-cl", 1e-4),
        pytest.param("openvino-fp32", 1e-4, marks=pytest.mark.integration),  # compiles: ~5 s
        ("torch-bf16-cl", 0.02),
        pytest.param("openvino-bf16", 0.02, marks=pytest.mark.integration),
    ],
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


def test_a_channels_last_path_leaves_the_callers_network_as_it_was():
    settings = ModelSettings(input_size=160)
    network = build_model(settings).eval()
    first_conv = network.conv1.weight  # (32, 3, 3, 3): channels_last is a different layout
    prepare_classifier(network, settings, InferencePath("torch-fp32-cl"), 2)
    # Converted in place, a torch-fp32 path timed beside it would have run channels_last too.
    assert first_conv.is_contiguous()
    assert not first_conv.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.integration  # compiles an OpenVINO model twice: ~5 s
def test_openvino_follows_a_new_thread_count(network_and_crops):
    network, settings, crops = network_and_crops
    classifier = prepare_classifier(network, settings, InferencePath("openvino-fp32"), 2)
    assert classifier.threads == 2  # read back from the compiled model
    before = classify_crops(classifier, settings, crops, 8)
    classifier.set_threads(1)
    assert classifier.threads == 1
    np.testing.assert_allclose(classify_crops(classifier, settings, crops, 8), before, atol=1e-6)


@pytest.mark.integration  # compiles OpenVINO models: ~10-15 s on 2 cores
def test_openvino_reports_the_precision_it_really_runs(network_and_crops):
    network, settings, _ = network_and_crops
    fp32 = prepare_classifier(network, settings, InferencePath("openvino-fp32"), 2)
    bf16 = prepare_classifier(network, settings, InferencePath("openvino-bf16"), 2)
    assert fp32.precision == "fp32"  # asked for explicitly, even where bf16 is native
    # OpenVINO's CPU plugin takes the bf16 hint on any AVX-512 CPU (emulated without
    # avx512_bf16/AMX: seen on an Intel Xeon with AVX-512 VNNI) and keeps fp32 on AVX2 alone.
    runs_bf16 = has_native_bf16() or "avx512f" in cpu_flags()
    assert bf16.precision == ("bf16" if runs_bf16 else "fp32")


@pytest.mark.integration  # compiles OpenVINO models: ~10-15 s on 2 cores
def test_several_paths_are_timed_and_the_fastest_kept(network_and_crops):
    network, settings, crops = network_and_crops
    example = crops_to_batch(crops[:4], settings)
    chosen = choose_classifier("torch-fp32-cl,openvino-fp32", network, settings, 2, example)
    assert chosen.chosen_by == "measured"
    assert set(chosen.images_per_s) == {"torch-fp32-cl", "openvino-fp32"}
    assert all(rate > 0 for rate in chosen.images_per_s.values())
    assert chosen.path.name == max(chosen.images_per_s, key=chosen.images_per_s.get)
    assert chosen.classifier.precision == "fp32"
    baseline = prepare_classifier(network, settings, InferencePath(BASELINE_PATH), 2)
    np.testing.assert_allclose(
        classify_crops(chosen.classifier, settings, crops, 4),
        classify_crops(baseline, settings, crops, 4),
        atol=1e-4,
    )
    single = choose_classifier("auto", network, settings, 2, example, flags=frozenset({"avx2"}))
    assert (single.path.name, single.chosen_by, single.images_per_s) == (
        "openvino-fp32",
        "cpu flags",
        {},
    )
    assert choose_classifier("torch-fp32", network, settings, 2, example).chosen_by == "configured"


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
