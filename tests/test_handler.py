"""The handler on its own: an archive built by `deploy.archive`, unpacked as TorchServe unpacks
it, and a fake TorchServe context (the real server's tests are in test_serving.py)."""

from __future__ import annotations

import base64
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from deploy.archive import DEFAULT_CONFIG, build_archive
from handler.deepfake_handler import DeepfakeHandler
from model.config import ConfigError
from model.errors import CheckpointError
from model.network import ModelSettings
from support.bad_inputs import concat_script
from support.weights import random_checkpoint


@dataclass
class FakeMetrics:
    counters: list[tuple[str, float]] = field(default_factory=list)
    times: list[tuple[str, float]] = field(default_factory=list)

    def add_counter(self, name, value, request_id, dimensions) -> None:
        self.counters.append((name, value))

    def add_time(self, name, value, request_id, unit, dimensions) -> None:
        self.times.append((name, value))


@dataclass
class FakeContext:
    """What the handler reads from and writes to TorchServe's Context, per request index."""

    model_dir: Path
    headers: list[dict[str, str]] = field(default_factory=list)
    statuses: dict[int, tuple[int, str]] = field(default_factory=dict)
    content_types: dict[int, str] = field(default_factory=dict)
    metrics: FakeMetrics = field(default_factory=FakeMetrics)
    model_name: str = "deepfake"
    gpu_id: int | None = None  # TorchServe sets it only where the model has GPUs

    @property
    def system_properties(self) -> dict[str, Any]:
        gpu = {} if self.gpu_id is None else {"gpu_id": self.gpu_id}
        return {"model_dir": str(self.model_dir), **gpu}

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.model_dir / "MAR-INF" / "MANIFEST.json").read_text())

    @property
    def model_yaml_config(self) -> dict[str, Any]:
        return yaml.safe_load((self.model_dir / "model-config.yaml").read_text())

    def get_request_id(self, idx: int) -> str:
        return f"request-{idx}"

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return self.headers[idx]

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.headers[idx].get(key)

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.content_types[idx] = value

    def set_response_status(self, code: int, phrase: str, idx: int) -> None:
        self.statuses[idx] = (code, phrase)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """deepfake.mar (random 160 px weights, the shipped config on torch's path: OpenVINO's
    conversion, 5 s a worker, is tested by the real servers of test_serving) unpacked like a
    worker's."""
    folder = tmp_path_factory.mktemp("handler")
    settings = ModelSettings(name="deepfake-handler-test", version="0.4.0", input_size=160)
    checkpoint = random_checkpoint(folder / "best.pt", settings)
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["deepfake"] = {"engine": {"inference_path": "torch-fp32-cl"}}
    config_file = folder / "model-config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    mar = build_archive(checkpoint, folder / "store", config_file=config_file)
    unpacked = folder / "model_dir"
    zipfile.ZipFile(mar).extractall(unpacked)
    return unpacked


@pytest.fixture(scope="module")
def handler(model_dir) -> DeepfakeHandler:
    handler = DeepfakeHandler()
    handler.initialize(FakeContext(model_dir))
    return handler


def test_a_batch_gets_one_answer_per_request_and_a_bad_one_stays_its_own(
    handler, model_dir, one_face_video
):
    video = bytearray(one_face_video.path.read_bytes())
    context = FakeContext(
        model_dir,
        headers=[
            {"X-Deepfake-Frames": "2"},
            {},
            {"X-Deepfake-Frames": "1000"},
            {"X-Deepfake-Frames": "2", "explain": "True"},
            {},
        ],
    )
    script = bytearray(concat_script("MAR-INF/MANIFEST.json"))
    rows = [{"body": video}, {"body": bytearray(b"not a video")}, {"body": video}, {"body": video}]
    rows.append({"body": script})
    answers = [json.loads(text) for text in handler.handle(rows, context)]
    assert (
        answers[0]["label"] in ("fake", "real", "uncertain") and answers[0]["frames_analyzed"] == 2
    )
    assert "explanations" not in answers[0]
    assert (answers[1]["status"], answers[1]["error"]) == (400, "invalid_video")
    assert (answers[2]["status"], answers[2]["error"]) == (400, "invalid_option")
    assert (answers[4]["status"], answers[4]["error"]) == (415, "unsupported_format")
    assert "FFmpeg concat script" in answers[4]["message"]
    assert context.statuses == {
        1: (400, "invalid_video"),
        2: (400, "invalid_option"),
        4: (415, "unsupported_format"),
    }
    assert answers[3]["fake_probability"] == answers[0]["fake_probability"]
    assert len(answers[3]["explanations"]) == 2  # both faces of two frames, at most 3
    assert set(context.content_types.values()) == {"application/json"}
    counted = dict(context.metrics.counters[:4])
    assert counted["DeepfakeFramesDecoded"] == 2 and counted["DeepfakeFacesFound"] >= 1
    assert [name for name, _ in context.metrics.counters].count("DeepfakeRequestErrors") == 3
    assert {name for name, _ in context.metrics.times} >= {"DeepfakeDecodeTime"}


def test_a_kserve_v1_body_is_answered_in_its_envelope(handler, model_dir, one_face_video):
    encoded = base64.b64encode(one_face_video.path.read_bytes()).decode()
    context = FakeContext(model_dir, headers=[{}, {"explain": "True"}, {}])
    rows = [
        {"body": {"instances": [{"data": encoded, "frames": 2}]}},
        {"body": {"instances": [{"data": encoded, "frames": 2, "explain_faces": 1}]}},
        {"body": {"instances": []}},
    ]
    predicted, explained, refused = (json.loads(text) for text in handler.handle(rows, context))
    [report] = predicted["predictions"]
    assert report["frames_analyzed"] == 2
    assert len(explained["explanations"][0]["explanations"]) == 1
    assert refused["error"] == "invalid_v1_request" and context.statuses[2][0] == 400


def test_a_bug_is_a_500_for_that_request_only(handler, model_dir, one_face_video, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("engine exploded")

    context = FakeContext(model_dir, headers=[{}, {}])
    rows = [{"body": bytearray(one_face_video.path.read_bytes())}] * 2
    with monkeypatch.context() as patch:
        patch.setattr(handler.service, "analyze", broken)
        answers = [json.loads(text) for text in handler.handle(rows, context)]
    assert [a["status"] for a in answers] == [500, 500]
    assert "engine exploded" not in answers[0]["message"]  # details stay in the worker's log
    rows = [{"body": bytearray(one_face_video.path.read_bytes())}]
    context = FakeContext(model_dir, headers=[{"X-Deepfake-Frames": "1"}])
    assert json.loads(handler.handle(rows, context)[0])["frames_analyzed"] == 1


def test_an_archive_with_a_config_the_schema_refuses_is_never_built(model_dir, tmp_path):
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["deepfake"] = {"sampling": {"interval": 10, "max_frame": 8}}
    config_file = tmp_path / "model-config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    checkpoint = model_dir.parent / "best.pt"
    with pytest.raises(ConfigError, match=r"deepfake\.sampling: \['max_frame'\]"):
        build_archive(checkpoint, tmp_path / "store", config_file=config_file)
    assert not (tmp_path / "store" / "deepfake.mar").exists()


def test_a_damaged_archive_is_refused_at_start(model_dir, tmp_path):
    damaged = tmp_path / "model_dir"
    zipfile.ZipFile(next(model_dir.parent.glob("store/*.mar"))).extractall(damaged)
    weights = damaged / "checkpoint.pt"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"the \.mar is damaged; rebuild it"):
        DeepfakeHandler().initialize(FakeContext(damaged))


def test_a_worker_serves_on_the_gpu_torchserve_gives_it_or_on_the_cpu(
    handler, model_dir, one_face_video
):
    context = FakeContext(model_dir, headers=[{"X-Deepfake-Frames": "1"}])
    rows = [{"body": bytearray(one_face_video.path.read_bytes())}]
    on_cpu = json.loads(handler.handle(rows, context)[0])["model"]
    assert on_cpu["device"] == "cpu" and not on_cpu["inference_path"].startswith("cuda")
    given = DeepfakeHandler()
    given.initialize(FakeContext(model_dir, gpu_id=0))
    model = json.loads(given.handle(rows, context)[0])["model"]
    if torch.cuda.is_available():
        assert model["device"].startswith("cuda:0") and model["inference_path"].startswith("cuda")
        assert model["path_chosen_by"] == "gpu"
    else:  # a gpu_id with no CUDA here: served on the CPU, not refused
        assert model["device"] == "cpu" and model["inference_path"] == on_cpu["inference_path"]
