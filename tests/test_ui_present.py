"""The web page's words and pieces from a report, and its error messages, without a browser."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import requests

from client.api import ServerError
from model.report import encode_image_base64
from protocol.wire import CREDENTIAL_STATUSES
from ui import present
from ui.form import FRAMES, INTERVAL, SERVER_DEFAULT, UiConfig, failure_message, readable_json
from ui.form import request_options as page_options

CROP = encode_image_base64(np.full((8, 8, 3), 200, np.uint8), ".jpg")


def report(label="fake", probability=0.8, model_name="deepfake-xception") -> dict:
    face = {"box": [0, 0, 8, 8], "fake_probability": 0.9, "crop_jpeg": CROP}
    return {
        "label": label,
        "fake_probability": probability,
        "threshold": 0.5,
        "aggregation": "mean",
        "frames_analyzed": 3,
        "faces_found": 3 if label != "no_face" else 0,
        "frames": [
            {"frame_index": 0, "timestamp_s": 0.0, "faces": [{**face, "fake_probability": 0.2}]},
            {
                "frame_index": 20,
                "timestamp_s": 0.8,
                "faces": [face, {**face, "box": [9, 0, 17, 8], "crop_jpeg": None}],
            },
            {"frame_index": 40, "timestamp_s": 1.6, "faces": []},
        ]
        if label != "no_face"
        else [{"frame_index": 0, "timestamp_s": 0.0, "faces": []}],
        "model": {
            "name": model_name,
            "version": "0.1.0",
            "checkpoint_sha256": "ab" * 32,
            "inference_path": "openvino-fp32",
            "detector": "dlib_hog",
        },
        "timing_ms": {"decode": 500.0, "detect": 250.0, "classify": 1250.0},
        "explanations": [{"overlay_png": CROP, "fake_probability": 0.9, "timestamp_s": 0.8}],
    }


def test_the_banner_says_the_verdict_the_number_the_threshold_and_the_caveat():
    banner = present.verdict_markdown(report())
    assert banner.startswith("## Likely manipulated (fake)")
    assert "**Fake probability 80%** (0.800)" in banner
    assert "fake at 0.50 or above" in banner and "`mean` rule" in banner
    assert "self-blended images" in banner and "demo model" not in banner
    assert "demo model" in present.verdict_markdown(report(model_name="deepfake-xception-demo"))
    assert present.verdict_markdown(report("real", 0.1)).startswith("## No sign of face manip")


def test_no_face_is_explained_without_a_probability():
    banner = present.verdict_markdown(report("no_face", None))
    assert banner.startswith("## No face found")
    assert "Fake probability" not in banner and "Frames analysed: 3" in banner


def test_gallery_is_most_suspicious_first_and_skips_faces_without_crops():
    items = present.gallery(report())
    assert [caption for _, caption in items] == [
        "90% fake · 0.8 s",
        "20% fake · 0.0 s",
    ]
    assert items[0][0].shape == (8, 8, 3)


def test_a_1_0_timeline_has_one_point_per_frame_with_faces():
    assert present.timeline(report()) == {
        "time_s": [0.0, 0.8],
        "fake_probability": [0.2, 0.9],
        "person": ["all faces", "all faces"],
    }


def test_a_1_1_timeline_has_one_line_per_person_and_a_card_each():
    body = report()
    for frame in body["frames"]:
        for number, face in enumerate(frame["faces"], start=1):
            face["person_id"] = number
    body["people"] = [
        {"person_id": 1, "label": "fake", "fake_probability": 0.9, "first_s": 0.0,
         "last_s": 0.8, "segments": [{"start_s": 0.0, "end_s": 0.8, "fake_probability": 0.9}],
         "representative": {"frame_index": 20, "box": body["frames"][1]["faces"][0]["box"]}},
    ]  # fmt: skip
    line = present.timeline(body)
    assert line["person"] == ["person 1", "person 1", "person 2"]
    assert line["time_s"] == [0.0, 0.8, 0.8]
    panel = present.people_html(body)
    assert panel.count('class="person-card"') == 1
    for shown in ("Person 1", ">fake<", "90% fake", "seen 0.0-0.8 s", "flagged fake 0.0-0.8 s"):
        assert shown in panel
    assert 'src="data:image/jpeg;base64,' in panel


def test_a_person_card_escapes_what_the_server_sent_and_drops_a_crop_that_is_not_base64():
    body = report()
    face = body["frames"][0]["faces"][0]
    face["crop_jpeg"] = '" onerror="alert(1)'
    body["people"] = [
        {"person_id": 1, "label": "<b>fake</b>", "fake_probability": 0.9, "first_s": 0.0,
         "last_s": 0.8, "segments": [],
         "representative": {"frame_index": body["frames"][0]["frame_index"], "box": face["box"]}},
    ]  # fmt: skip
    panel = present.people_html(body)
    assert "<b>" not in panel and "&lt;b&gt;fake&lt;/b&gt;" in panel
    assert "onerror" not in panel and "no crop" in panel and "no span flagged" in panel
    assert present.people_html(report()) == ""  # a 1.0 answer has no people: no panel


def test_explanations_model_line_and_batch_csv(tmp_path):
    [(overlay, caption)] = present.explanations(report())
    assert overlay.shape == (8, 8, 3) and caption == "90% fake · 0.8 s"
    line = present.model_markdown(report())
    assert "deepfake-xception 0.1.0" in line and "classify 1.25 s" in line
    rows = [
        present.batch_row("a.mp4", report(), None),
        present.batch_row("b.mp4", report("no_face", None), None),
        present.batch_row("c.txt", None, "not a video"),
    ]
    with open(present.write_csv(rows, tmp_path / "v.csv"), newline="") as file:
        read = list(csv.reader(file))
    assert read[0] == present.BATCH_COLUMNS
    assert read[1:] == [
        ["a.mp4", "fake", "0.8", "3", "3", ""],
        ["b.mp4", "no_face", "", "0", "3", ""],
        ["c.txt", "error", "", "", "", "not a video"],
    ]


def test_page_options_become_request_options():
    assert page_options(SERVER_DEFAULT, 16, SERVER_DEFAULT) == {}
    assert page_options(FRAMES, 8, "face_max") == {"frames": 8, "aggregation": "face_max"}
    assert page_options(INTERVAL, 5.0, SERVER_DEFAULT) == {"interval": 5}


CONFIG = UiConfig(inference_url="http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            ServerError(400, {"error": "invalid_video", "message": "not a video file"}, "u"),
            "The server could not analyse this file: not a video file",
        ),
        (ServerError(401, "InvalidKeyException: expired", "u"), "refused this page's access key"),
        (ServerError(503, {"message": "busy"}, "u"), "busy or still loading the model"),
        (ServerError(413, "", "u"), "larger than the server accepts"),
        (requests.ConnectionError(), "not reachable at http://127.0.0.1:9"),
        (requests.ReadTimeout(), "did not answer within 600 s"),
        (FileNotFoundError("key_file.json not found: ..."), "key_file.json not found"),
    ],
)
def test_failures_are_worded_for_people(error, expected):
    assert expected in failure_message(error, CONFIG)


def test_a_bug_is_not_hidden_behind_a_message():
    with pytest.raises(KeyError):
        failure_message(KeyError("label"), CONFIG)


def test_raw_json_shortens_base64_images_only():
    shown = readable_json(report())
    assert shown["frames"][1]["faces"][0]["crop_jpeg"].startswith("<base64 image, ")
    assert shown["explanations"][0]["overlay_png"].startswith("<base64 image, ")
    assert shown["model"]["name"] == "deepfake-xception"
    assert report()["frames"][1]["faces"][0]["crop_jpeg"] == CROP  # the original is untouched


def test_upload_limit_is_torchserves_max_request_size(tmp_path):
    config_file = tmp_path / "config.properties"
    config_file.write_text("# comment\nmax_request_size=104857600\n")
    assert UiConfig(ts_config=config_file).max_upload_bytes() == 104857600
    config_file.write_text("inference_address=http://127.0.0.1:8080\n")
    assert UiConfig(ts_config=config_file).max_upload_bytes() == 6553500  # TorchServe's default


def credentials(status: str, **fields) -> dict:
    return {"present": status not in ("none", "unsupported"), "status": status,
            "summary": f"summary of {status}", "signer": None, "actions": [], **fields}  # fmt: skip


def test_the_provenance_panel_words_each_credentials_status_calmly():
    container = {"format_long_name": "QuickTime / MOV", "encoder": "Lavf62", "streams": [
        {"type": "video", "codec": "h264"}, {"type": "audio", "codec": "aac"}]}  # fmt: skip
    plain = {"provenance": {"content_credentials": credentials("none"), "container": container}}
    panel = present.provenance_markdown(plain)
    assert "**Content Credentials: none.**" in panel and "says nothing about whether" in panel
    facts = "QuickTime / MOV; encoder Lavf62; no creation time; streams: video h264, audio aac"
    assert facts in panel
    signed = credentials(
        "untrusted",
        claim_generator="example-generator 2.1",
        signer={"subject": "Signer", "issuer": "CA"},
        actions=[{"action": "c2pa.created", "software_agent": "Gen", "ai_generated": True}],
    )
    panel = present.provenance_markdown({"provenance": {"content_credentials": signed}})
    assert "signer not confirmed" in panel and "**example-generator 2.1**" in panel
    assert "c2pa.created by Gen — **AI-generated**" in panel
    tampered = {"provenance": {"content_credentials": credentials("tampered")}}
    assert "changed after signing" in present.provenance_markdown(tampered)
    assert present.provenance_markdown(report()) == ""  # a server before schema 1.2
    assert set(present.CREDENTIAL_HEADLINES) == set(CREDENTIAL_STATUSES)  # a headline each
