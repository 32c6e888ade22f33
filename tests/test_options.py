"""The server's config block and the per-request options, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from handler.client import option_headers
from handler.options import RequestError, ServingConfig, request_options, video_bytes
from model.pipeline import PipelineConfig

MODEL_CONFIG = Path(__file__).resolve().parents[1] / "handler" / "model-config.yaml"


def test_the_shipped_model_config_matches_the_pipeline_defaults():
    config = ServingConfig.from_yaml(yaml.safe_load(MODEL_CONFIG.read_text()))
    assert config.pipeline == PipelineConfig()
    assert config.inference_path == "auto" and config.torch_threads is None


def test_a_typo_in_the_model_config_is_refused():
    with pytest.raises(ValueError, match=r"\['intervall'\]"):
        ServingConfig.from_yaml({"deepfake": {"intervall": 10}})
    with pytest.raises(ValueError, match="inference_path must be"):
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
