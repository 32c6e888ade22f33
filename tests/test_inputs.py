"""What a request sent, read and checked against the server's bounds, without a server."""

from __future__ import annotations

import base64

import pytest

from handler.inputs import RequestError, analysis_request, kserve_v1_instance, video_bytes
from model.config import ServiceConfig, load_config
from protocol.wire import option_headers

CONFIG = ServiceConfig()


def test_client_option_headers_are_read_back_by_the_server():
    headers = option_headers({"frames": 8, "aggregation": "face_max", "explain_faces": 2})
    assert headers["X-Deepfake-Explain-Faces"] == "2"
    request = analysis_request({}, headers, CONFIG, explain=True)
    assert request.config.sampling.num_frames == 8
    assert request.config.verdict.aggregation == "face_max"
    assert request.explain_faces == 2


def test_a_client_cannot_send_an_option_the_protocol_does_not_know():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['frame'\]"):
        option_headers({"frame": 8})


def test_explanations_only_on_the_explanations_route_and_by_default_the_configured_count():
    assert analysis_request({}, {}, CONFIG, explain=False).explain_faces == 0
    assert analysis_request({}, {}, CONFIG, explain=True).explain_faces == 3


def test_a_multipart_field_wins_over_a_header():
    request = analysis_request({"interval": b"5"}, {"X-Deepfake-Interval": "50"}, CONFIG, False)
    assert request.config.sampling.interval == 5


def test_an_interval_asked_for_is_kept_exactly_even_on_a_short_clip():
    assert CONFIG.sampling.min_frames == 15  # the default: 15 frames of a 100-frame clip
    asked = analysis_request({"interval": "20"}, {}, CONFIG, False).config.sampling
    assert asked.frame_indices(100) == [0, 20, 40, 60, 80]
    default = analysis_request({}, {}, CONFIG, False).config.sampling
    assert len(default.frame_indices(100)) == 15


def test_bounds_come_from_the_server_config():
    config = load_config({"deepfake": {"sampling": {"max_frames": 16}}})
    request = analysis_request({}, {"x-deepfake-frames": "16"}, config, explain=False)
    assert request.config.sampling.num_frames == 16
    with pytest.raises(RequestError, match=r"frames must lie in 1\.\.16") as raised:
        analysis_request({}, {"x-deepfake-frames": "17"}, config, explain=False)
    assert raised.value.status == 400


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"frames": "8", "interval": "2"}, "frames or interval, not both"),
        ({"aggregation": "vote"}, "is not one of"),
        ({"crops": "maybe"}, "crops must be true or false"),
        ({"interval": "x"}, "whole number"),
        ({"colour": "red"}, r"unknown option\(s\) \['colour'\]"),
    ],
)
def test_bad_options_are_refused_with_a_message_naming_them(options, message):
    with pytest.raises(RequestError, match=message) as raised:
        analysis_request(options, {}, CONFIG, explain=False)
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
    request = analysis_request(instance, {}, CONFIG, explain=False)
    assert request.config.sampling.num_frames == 8 and request.include_crops


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
