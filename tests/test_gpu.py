"""On an NVIDIA GPU: the CUDA paths give the CPU's verdicts, the service and handler run there,
and training uses it. Marked gpu and skipped without CUDA (benchmarks/gpu_check.sh runs them
on a GPU machine); the device choice itself is tested everywhere in test_device.py."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from model.config import EngineConfig, ServiceConfig
from model.credentials import CredentialsConfig
from model.device import cuda_half
from model.faces import DetectorConfig, make_detector
from model.network import load_checkpoint
from model.people import TrackingConfig
from model.pipeline import extract_faces
from model.runtime import BASELINE_PATH, InferencePath, prepare_classifier
from model.service import DetectorService
from model.tensors import crops_to_batch
from model.verdict import VerdictConfig
from model.video import SamplingConfig
from support.weights import seeded_network
from tests.test_service import RECORDED, TORCH_FP32

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA"),
]
GPU = torch.device("cuda", 0)
# The mean rule and no uncertain band, as the recorded CPU verdicts were made; no face
# descriptors or Content Credentials (neither changes a face's score, and GPU machines here
# lack face-recognition-models and c2pa-python: benchmarks/gpu_carry.sh).
ON_GPU = ServiceConfig(
    engine=EngineConfig(inference_path="auto"),
    verdict=VerdictConfig(aggregation="mean", uncertain_band=0.0),
    people=TrackingConfig(descriptors=False),
    credentials=CredentialsConfig(enabled=False),
)
VERDICT_TOLERANCE = 0.02  # the bar: half precision against the CPU's fp32


def test_the_cuda_paths_give_the_cpu_logits(one_face_video):
    network, settings = seeded_network()
    faces = extract_faces(
        one_face_video.path, SamplingConfig(num_frames=8), make_detector(DetectorConfig()), settings
    )
    batch = crops_to_batch([face.crop for face in faces.faces], settings)
    with torch.inference_mode():
        cpu = prepare_classifier(network, settings, InferencePath(BASELINE_PATH), 2)(batch)
        for name, tolerance in (("cuda-fp32", 1e-3), (f"cuda-{cuda_half(GPU)}", 0.05)):
            logits = prepare_classifier(network, settings, InferencePath(name), 2, gpu=GPU)(batch)
            assert logits.device.type == "cpu" and logits.dtype == torch.float32
            probabilities = logits.softmax(1)[:, 1]
            expected = cpu.softmax(1)[:, 1]
            assert torch.allclose(probabilities, expected, atol=tolerance), name


def test_every_sample_video_on_the_gpu_keeps_its_cpu_verdict(sample_videos):
    network, settings = seeded_network()
    service = DetectorService(network, settings, ON_GPU, "0" * 64, gpu=GPU)
    assert service.path.runtime == "cuda" and service.model_info.device.startswith("cuda:0")
    assert service.crops_per_batch == ON_GPU.engine.cuda_crops_per_batch
    recorded = json.loads(RECORDED.read_text())
    for video in sample_videos:
        expected = recorded[video.path.name]
        scored = service.analyze(video.path).verdict
        boxes = [
            [frame.frame_index, [face.box.as_list() for face in frame.faces]]
            for frame in scored.faces.frames
            if frame.faces
        ]
        assert boxes == expected["faces"], video.name  # detection stays on the CPU
        if expected["fake_probability"] is None:
            assert scored.fake_probability is None
            continue
        assert scored.fake_probability == pytest.approx(
            expected["fake_probability"], abs=VERDICT_TOLERANCE
        ), video.name
        assert [f.fake_probability for f in scored.faces.faces] == pytest.approx(
            expected["face_probabilities"], abs=VERDICT_TOLERANCE
        ), video.name


def test_explanations_work_beside_a_gpu_classifier(one_face_video):
    network, settings = seeded_network()
    service = DetectorService(network, settings, ON_GPU, "0" * 64, gpu=GPU)
    cpu_config = dataclasses.replace(ON_GPU, engine=TORCH_FP32.engine)
    cpu = DetectorService(network, settings, cpu_config, "0" * 64)
    request = service.request(explain_faces=2)
    explained = service.analyze(one_face_video.path, request).explanations
    assert len(explained) == 2
    assert [e["fake_probability"] for e in explained] == pytest.approx(
        [e["fake_probability"] for e in cpu.analyze(one_face_video.path, request).explanations],
        abs=VERDICT_TOLERANCE,
    )


def test_a_short_training_run_trains_on_the_gpu(request, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")  # not on every GPU image
    pytest.importorskip("face_recognition_models")  # the landmarks self-blending needs
    from training.train import main

    split_file = request.getfixturevalue("split_file")  # faces extracted here, on the CPU

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    arguments = ["--split", str(split_file), "--output-dir", str(tmp_path / "out")]
    arguments += ["--input-size", "96", "--batch-size", "8", "--max-steps-per-epoch", "4"]
    assert main([*arguments, "--epochs", "1", "--registered-model", ""]) == 0
    [run] = mlflow.search_runs(experiment_names=["deepfake-serve"], output_format="list")
    assert run.data.params["device"].startswith("cuda:0")
    assert run.data.params["precision_used"] == cuda_half(GPU)
    assert int(run.data.params["data_workers"]) >= 1
    _, settings = load_checkpoint(tmp_path / "out" / "best.pt")  # on the CPU, as served
    assert settings.input_size == 96
