"""Int8 quantization with real NNCF and OpenVINO: calibrated on faces extracted here, checked on
the validation videos, and giving the fp32 verdicts on every sample video."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from model.faces import DetectorConfig, make_detector
from model.network import ModelSettings, load_checkpoint, load_settings
from model.pipeline import classify_crops, extract_faces
from model.runtime import BASELINE_PATH, INT8_MODEL_NAME, InferencePath, prepare_classifier
from model.verdict import VerdictConfig, verdict
from model.video import SamplingConfig
from support.weights import random_checkpoint
from training.data_dir import load_split
from training.dataset import FaceCrops, split_items
from training.quantize import QuantizeConfig, build_int8, main, quantize

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    settings = ModelSettings(name="int8-test", input_size=160)  # served_split_file's crops
    return random_checkpoint(tmp_path_factory.mktemp("int8-checkpoint") / "best.pt", settings)


@pytest.fixture(scope="module")
def int8_build(checkpoint, served_split_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    check = build_int8(checkpoint, served_split_file, folder, QuantizeConfig(calibration_crops=100))
    return check, folder


def test_int8_model_is_calibrated_checked_and_saved(int8_build, served_split_file):
    check, folder = int8_build
    split = json.loads(served_split_file.read_text())
    validation = [v for v in split["videos"] if v["split"] == "val" and v["crops"]]
    assert check.accepted, check.reason
    assert 0 < check.calibration_crops <= 100
    assert check.validation_videos == len(validation) > 0
    assert check.max_probability_shift <= 0.02
    if check.video_auc_fp32 is not None:
        assert check.video_auc_fp32 - check.video_auc_int8 <= 0.01
    assert (folder / INT8_MODEL_NAME).is_file()
    assert (folder / INT8_MODEL_NAME).with_suffix(".bin").stat().st_size > 0


def test_int8_gives_the_fp32_verdict_on_every_sample_video(int8_build, checkpoint, sample_videos):
    _, folder = int8_build
    network, settings = load_checkpoint(checkpoint)
    fp32 = prepare_classifier(network, settings, InferencePath(BASELINE_PATH), 2)
    int8 = prepare_classifier(
        network, settings, InferencePath("openvino-int8"), 2, folder / INT8_MODEL_NAME
    )
    detector = make_detector(DetectorConfig())
    compared = 0
    for video in sample_videos:
        faces = extract_faces(video.path, SamplingConfig(num_frames=4), detector, settings)
        verdicts = []
        for engine in (fp32, int8):
            crops = [face.crop for face in faces.faces]
            for face, p in zip(
                faces.faces, classify_crops(engine, settings, crops, 4), strict=True
            ):
                face.fake_probability = float(p)
            verdicts.append(verdict(faces, VerdictConfig(aggregation="mean", threshold=0.5)))
        assert verdicts[0].label == verdicts[1].label, video.name
        if verdicts[0].fake_probability is not None:
            shift = abs(verdicts[0].fake_probability - verdicts[1].fake_probability)
            assert shift <= 0.02, (video.name, shift)
            compared += 1
    assert compared >= 20


def test_a_failed_check_saves_nothing_and_exits_non_zero(
    checkpoint, served_split_file, tmp_path, capsys
):
    """A tolerance no int8 model can meet: the CLI reports why and writes no model."""
    code = main(
        [
            "--checkpoint", str(checkpoint),
            "--split", str(served_split_file),
            "--output", str(tmp_path / "out"),
            "--calibration-crops", "20",
            "--max-probability-shift", "0",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out  # NNCF's progress bars come first
    report = json.loads(out[out.rindex('{\n  "calibration_crops"') :])
    assert code == 1 and report["accepted"] is False
    assert "moves by" in report["reason"]
    assert not (tmp_path / "out").exists()
    np.testing.assert_array_less(0, report["max_probability_shift"])


def test_accuracy_control_puts_the_worst_layers_back_to_fp32(checkpoint, served_split_file):
    """An unreachable target on the calibration videos: NNCF ranks the layers and returns
    the quantized model with `max_restored_layers` of them back in fp32 (fewer FakeQuantize
    nodes than with a target the plain int8 model already meets). A small convolutional
    network: NNCF recompiles the model for every layer it ranks (3 min for Xception here)."""
    settings = load_settings(checkpoint)
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2),
    ).eval()  # fmt: skip
    split = load_split(served_split_file)
    items = split_items(split, "train", split["image_dir"], fake_source="videos")
    crops = FaceCrops(items, settings, train=False)
    counts = {}
    for name, target in (("met", 1.0), ("unreachable", 0.0)):
        config = QuantizeConfig(
            calibration_crops=40, restore_max_shift=target, max_restored_layers=2, ranking_crops=16
        )
        int8_model, used = quantize(network, settings, crops, config)
        assert used == min(40, len(crops))
        counts[name] = sum(op.get_type_name() == "FakeQuantize" for op in int8_model.get_ops())
    assert 0 < counts["unreachable"] < counts["met"], counts
