"""The server's config block and the per-request options, without a server."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from benchmarks.bench import BASELINE_SETTINGS, variant_config
from handler.client import option_headers
from handler.options import (
    RequestError,
    ServingConfig,
    kserve_v1_instance,
    request_options,
    video_bytes,
)
from model.pipeline import PipelineConfig

MODEL_CONFIG = Path(__file__).resolve().parents[1] / "handler" / "model-config.yaml"


def test_the_shipped_model_config_matches_the_pipeline_defaults():
    config = ServingConfig.from_yaml(yaml.safe_load(MODEL_CONFIG.read_text()))
    assert config.pipeline == PipelineConfig()
    assert config.inference_path == "auto" and config.torch_threads is None
    assert config.return_large_buffers_to_os


def test_the_benchmark_baseline_is_a_valid_config_without_the_workers_tuning():
    config = ServingConfig.from_yaml(variant_config(BASELINE_SETTINGS))
    assert config.inference_path == "torch-fp32" and not config.pipeline.overlap_stages
    assert not config.return_large_buffers_to_os


def test_a_typo_in_the_model_config_is_refused():
    with pytest.raises(ValueError, match=r"\['intervall'\]"):
        ServingConfig.from_yaml({"deepfake": {"intervall": 10}})
    with pytest.raises(ValueError, match="inference path must be auto"):
        ServingConfig.from_yaml({"deepfake": {"inference_path": "openvino-int4"}})


def test_client_option_headers_are_read_back_by_the_server():
    headers = option_headers({"frames": 8, "aggregation": "face_max", "explain_faces": 2})
    assert headers["X-Deepfake-Explain-Faces"] == "2"
    options = request_options({}, headers, ServingConfig())
    assert options.pipeline.sampling.num_frames == 8
    assert options.pipeline.aggregation == "face_max"
    assert options.explain_faces == 2


def test_a_multipart_field_wins_over_a_header():
    options = request_options({"interval": b"5"}, {"X-Deepfake-Interval": "50"}, ServingConfig())
    assert options.pipeline.sampling.interval == 5


def test_limits_come_from_the_server_config():
    config = ServingConfig.from_yaml({"deepfake": {"max_frames": 16}})
    assert request_options({}, {"x-deepfake-frames": "16"}, config).pipeline.sampling.num_frames
    with pytest.raises(RequestError, match=r"frames must lie in 1\.\.16") as raised:
        request_options({}, {"x-deepfake-frames": "17"}, config)
    assert raised.value.status == 400


@pytest.mark.parametrize(
    ("row", "status", "error"),
    [
        ({"body": {"video": 1}}, 415, "unsupported_media_type"),
        ({"body": "some text"}, 415, "unsupported_media_type"),
        ({"body": bytearray()}, 400, "empty_body"),
        ({"file": bytearray(b"video")}, 400, "missing_video"),
        ({}, 400, "missing_video"),
    ],
)
def test_where_the_video_is_not(row, status, error):
    with pytest.raises(RequestError) as raised:
        video_bytes(row)
    assert (raised.value.status, raised.value.error) == (status, error)


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain; charset=utf-8", "image/png", "audio/mp4"]
)
def test_a_declared_type_that_cannot_be_a_video_is_refused(content_type):
    with pytest.raises(RequestError, match="is not a video") as raised:
        video_bytes({"body": bytearray(b"video")}, {"Content-Type": content_type})
    assert (raised.value.status, raised.value.error) == (415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type",
    ["application/octet-stream", "video/mp4", "multipart/form-data; boundary=x", ""],
)
def test_video_and_binary_types_are_accepted(content_type):
    headers = {"content-type": content_type} if content_type else {}
    assert video_bytes({"body": bytearray(b"video")}, headers) == b"video"


def test_the_video_is_the_raw_body_or_the_data_field():
    assert video_bytes({"body": bytearray(b"abc")}) == b"abc"
    assert video_bytes({"data": bytearray(b"xyz"), "frames": b"3"}) == b"xyz"


# TorchServe hands a JSON body (POST /v1/models/deepfake:predict) over already parsed.
def v1_row(*instances) -> dict:
    return {"body": {"instances": list(instances)}}


def test_a_v1_instance_carries_the_video_as_base64_and_its_options():
    encoded = base64.b64encode(b"\x00video bytes\xff").decode()
    assert kserve_v1_instance(v1_row({"data": encoded})) == {"data": b"\x00video bytes\xff"}
    wrapped = "\n".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))  # base64 -w76
    instance = kserve_v1_instance(v1_row({"data": wrapped, "frames": 8, "crops": True}))
    assert instance == {"data": b"\x00video bytes\xff", "frames": 8, "crops": True}
    options = request_options(instance, {}, ServingConfig())
    assert options.pipeline.sampling.num_frames == 8 and options.include_crops


def test_rows_that_are_not_v1_bodies_are_left_to_the_other_readers():
    assert kserve_v1_instance({"body": bytearray(b"video")}) is None
    assert kserve_v1_instance({"body": {"video": "AAAA"}}) is None  # JSON, not v1: 415 later
    assert kserve_v1_instance({"data": bytearray(b"video")}) is None


@pytest.mark.parametrize(
    ("row", "error", "message"),
    [
        (v1_row({"data": "not base64!"}), "invalid_base64", "'data' is not valid base64"),
        (v1_row({"data": "abcde"}), "invalid_base64", r"base64 -w0 video\.mp4"),
        (v1_row({"data": "vidéo"}), "invalid_base64", "is not valid base64"),
        (v1_row({"data": {"b64": "AAAA"}}), "missing_video", "no base64 'data'"),
        (v1_row({"video": "AAAA"}), "missing_video", r'\{"instances": \[\{"data"'),
        (v1_row("AAAA"), "missing_video", "no base64 'data'"),
        (v1_row(), "invalid_v1_request", "got 0 instances"),
        (v1_row({"data": "AAAA"}, {"data": "AAAA"}), "invalid_v1_request", "one video per"),
        ({"body": {"instances": "AAAA"}}, "invalid_v1_request", "got no list of instances"),
    ],
)
def test_a_v1_body_without_one_base64_video_is_refused(row, error, message):
    with pytest.raises(RequestError, match=message) as raised:
        kserve_v1_instance(row)
    assert (raised.value.status, raised.value.error) == (400, error)


def test_an_empty_v1_video_is_an_empty_body():
    with pytest.raises(RequestError, match=r"empty \(0 bytes\)"):
        video_bytes(kserve_v1_instance(v1_row({"data": ""})))


def test_base64_text_outside_a_v1_body_is_still_refused():
    encoded = base64.b64encode(b"video").decode()
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    with pytest.raises(RequestError, match="sent as text") as raised:
        video_bytes({"data": encoded}, multipart)
    assert raised.value.status == 415
