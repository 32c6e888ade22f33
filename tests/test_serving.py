"""The TorchServe bundle end to end: `deploy.archive` builds a .mar from a checkpoint made here,
a real TorchServe serves it on free loopback ports, and the client and raw HTTP talk to it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import zipfile

import cv2
import numpy as np
import pytest
import requests
import yaml

from client import healthcheck
from client.__main__ import main as client_main
from client.api import DeepfakeClient, ServerError
from client.healthcheck import read_keys
from client.sheet import decode_image_base64
from deploy.archive import ARCHIVE_INFO
from deploy.ts_config import read_properties
from model.network import file_sha256
from model.runtime import INT8_MODEL_NAME, candidate_paths
from model.service import DetectorService
from model.video import SamplingConfig
from protocol.wire import SCHEMA_VERSION
from support.credentials import ai_video_manifest, signing_authority
from support.torchserve import PORT_KEYS, serving, worker_processes

pytestmark = pytest.mark.serving

PACKED = {"protocol", "model", "handler"}  # what a worker imports: no client, tools or training
VIDEO_KEYS = {"width", "height", "fps", "duration_s", "frame_count", "codec", "container"}
MODEL_KEYS = {
    "name",
    "version",
    "checkpoint_sha256",
    "input_size",
    "inference_path",
    "precision",
    "path_chosen_by",
    "device",
    "detector",
    "measured_images_per_s",
    "calibration",
}


@pytest.fixture(scope="module")
def fake_video(sample_videos):
    return next(v for v in sample_videos if v.name == "a_fs_wolfgang_c1__grace_hopper.mp4")


def test_archive_holds_the_checkpoint_and_only_the_code_a_worker_runs(
    served_checkpoint, model_store
):
    archive = model_store / "deepfake.mar"
    with zipfile.ZipFile(archive) as mar:
        names = set(mar.namelist())
        info = json.loads(mar.read(ARCHIVE_INFO))
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
    assert {"checkpoint.pt", "checkpoint.json", "model-config.yaml"} <= names
    code = {name for name in names if name.endswith(".py")}
    assert {
        "deepfake_handler.py",
        "handler/inputs.py",
        "model/service.py",
        "protocol/wire.py",
    } <= code
    assert {name.split("/")[0] for name in code} == {"deepfake_handler.py", *PACKED}
    assert info["checkpoint_sha256"] == file_sha256(served_checkpoint)
    assert manifest["model"]["modelVersion"] == "0.1.0"  # from the checkpoint's settings
    recorded = (model_store / "deepfake.mar.sha256").read_text().split()
    assert recorded == [file_sha256(archive), "deepfake.mar"]


def test_raw_upload_gets_the_documented_schema(server, fake_video, served_checkpoint):
    url = f"{server.client.address.inference_url}/predictions/deepfake"
    response = requests.post(
        url,
        data=fake_video.path.read_bytes(),
        headers={
            **server.client.auth_headers("inference"),
            "Content-Type": "application/octet-stream",
        },
        timeout=300,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    report = response.json()
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["label"] in ("fake", "real", "uncertain")
    assert 0.0 <= report["fake_probability"] <= 1.0
    assert report["threshold"] == 0.5 and report["aggregation"] == "person_max"
    served = SamplingConfig().frame_indices(fake_video.frame_count)  # 15 of a 4 s clip
    assert [f["frame_index"] for f in report["frames"]] == served
    assert report["frames_analyzed"] == len(served) == 15
    assert report["faces_found"] == sum(len(f["faces"]) for f in report["frames"]) > 0
    assert set(report["video"]) >= VIDEO_KEYS and report["video"]["codec"] == "h264"
    assert (report["video"]["width"], report["video"]["height"]) == (
        fake_video.width,
        fake_video.height,
    )
    assert set(report["model"]) == MODEL_KEYS
    assert report["model"]["checkpoint_sha256"] == file_sha256(served_checkpoint)
    auto = [path.name for path in candidate_paths("auto")]  # what suits this CPU
    assert report["model"]["inference_path"] in auto
    assert report["model"]["path_chosen_by"] == ("cpu flags" if len(auto) == 1 else "measured")
    assert set(report["timing_ms"]) == {
        "decode",
        "detect",
        "classify",
        "track",
        "provenance",
        "total",
    }
    for frame in report["frames"]:
        assert frame["frame_index"] in served and frame["timestamp_s"] >= 0
        for face in frame["faces"]:
            x0, y0, x1, y1 = face["box"]
            assert 0 <= x0 < x1 <= fake_video.width and 0 <= y0 < y1 <= fake_video.height
            assert 0.0 <= face["fake_probability"] <= 1.0
            assert "crop_jpeg" not in face  # only when asked


def test_multipart_upload_and_options_in_headers_and_fields(server, fake_video):
    client = server.client
    raw = client.predict(fake_video.path)
    multipart = client.predict(fake_video.path, multipart=True)
    assert multipart["fake_probability"] == raw["fake_probability"]
    three = client.predict(fake_video.path, {"frames": 3, "aggregation": "face_max"})
    assert three["frames_analyzed"] == 3 and three["aggregation"] == "face_max"
    assert three["sampling"]["num_frames"] == 3
    url = f"{client.address.inference_url}/predictions/deepfake"
    as_field = requests.post(
        url,
        files={"data": fake_video.path.read_bytes(), "interval": (None, "50")},
        headers=client.auth_headers("inference"),
        timeout=300,
    ).json()
    assert [f["frame_index"] for f in as_field["frames"]] == [0, 50, 100]
    with_crops = client.predict(fake_video.path, {"frames": 2, "crops": "true"})
    face = next(f for frame in with_crops["frames"] for f in frame["faces"])
    assert decode_image_base64(face["crop_jpeg"]).shape == (160, 160, 3)


@pytest.mark.parametrize(
    ("options", "status", "error", "named"),
    [
        ({"frames": 1000}, 400, "invalid_option", "frames must lie in 1..64"),
        ({"interval": "often"}, 400, "invalid_option", "interval must be a whole number"),
        ({"aggregation": "median"}, 400, "invalid_option", "aggregation 'median'"),
        ({"frames": 2, "interval": 5}, 400, "invalid_option", "not both"),
    ],
)
def test_bad_options_get_a_json_error_naming_them(
    server, fake_video, options, status, error, named
):
    with pytest.raises(ServerError) as raised:
        server.client.predict(fake_video.path, options)
    assert raised.value.status == status
    assert raised.value.body["error"] == error and named in raised.value.body["message"]


def test_an_option_the_protocol_does_not_know_is_refused_by_the_server(server, fake_video):
    response = requests.post(
        f"{server.client.address.inference_url}/predictions/deepfake",
        data=fake_video.path.read_bytes(),
        headers={**server.client.auth_headers("inference"), "X-Deepfake-Colour": "red"},
        timeout=300,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unknown_option" and "['colour']" in response.text


def test_no_face_video_is_a_200_with_label_no_face(server, no_face_video):
    report = server.client.predict(no_face_video.path)
    assert report["label"] == "no_face" and report["fake_probability"] is None
    assert report["faces_found"] == 0 and report["frames_analyzed"] > 0


def test_bad_uploads_get_4xx_json_and_the_worker_serves_the_next(server, fake_video):
    client = server.client
    url = f"{client.address.inference_url}/predictions/deepfake"
    auth = client.auth_headers("inference")
    cases = [
        (b"this is not a video" * 10, {}, 415, "unsupported_format", "looks like text"),
        (b"", {}, 400, "empty_body", "empty (0 bytes)"),
        (
            b'{"video": 1}',
            {"Content-Type": "application/json"},
            415,
            "unsupported_media_type",
            "Content-Type application/json is not a video",
        ),
    ]
    for body, headers, status, error, message in cases:
        headers = {"Content-Type": "application/octet-stream", **headers, **auth}
        response = requests.post(url, data=body, headers=headers, timeout=60)
        assert response.status_code == status, response.text
        assert response.json()["error"] == error and message in response.json()["message"]
    wrong_field = requests.post(
        url, files={"file": fake_video.path.read_bytes()}, headers=auth, timeout=60
    )
    assert wrong_field.status_code == 400
    assert "multipart field 'data'" in wrong_field.json()["message"]
    assert "['file']" in wrong_field.json()["message"]
    assert client.predict(fake_video.path)["label"] in ("fake", "real", "uncertain")


def test_a_bad_request_in_a_batch_leaves_the_others_alone(server, sample_videos):
    """Requests that queue together are handled as one batch (0.2.0 batches, see `V2_BATCH`);
    each still gets its own verdict, equal to the one it gets alone."""
    client = DeepfakeClient(dataclasses.replace(server.client.address, model="deepfake/0.2.0"))
    videos = [v.path for v in sample_videos if v.face_frames][:3]
    alone = {path: client.predict(path, {"frames": 2})["fake_probability"] for path in videos}
    uploads = [*videos, b"not a video at all"]
    outcomes: dict = {}

    def send(upload):
        try:
            outcomes[upload] = client.predict(upload, {"frames": 2})
        except ServerError as error:
            outcomes[upload] = error

    threads = [threading.Thread(target=send, args=(upload,)) for upload in uploads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes[uploads[-1]].status == 415  # text, refused by its first bytes
    for path in videos:
        assert outcomes[path]["fake_probability"] == pytest.approx(alone[path], abs=1e-5)


def test_a_30_mb_upload_is_accepted(server, fake_video):
    # The sample clip with a 30 MB `free` box after its last box: a valid MP4 of that size.
    padding = 30_000_000
    video = fake_video.path.read_bytes() + (padding + 8).to_bytes(4, "big") + b"free"
    video += bytes(padding)
    report = server.client.predict(video, {"frames": 2})
    assert report["video"]["width"] == fake_video.width and report["frames_analyzed"] == 2


def test_server_verdict_equals_the_in_process_service(server, served_checkpoint, sample_videos):
    """What training.infer and training.evaluate compute (the same service, checkpoint and
    defaults) is what the server answers."""
    service = DetectorService.from_checkpoint(served_checkpoint)
    names = ["a_fs_still_grace_hopper__astronaut.mp4", "a_still_multi_face.mp4"]
    for video in (v for v in sample_videos if v.name in names):
        local = service.analyze(video.path).verdict
        served = server.client.predict(video.path)
        assert served["label"] == local.label
        assert served["fake_probability"] == pytest.approx(local.fake_probability, abs=1e-4)
        served_faces = [f["fake_probability"] for fr in served["frames"] for f in fr["faces"]]
        local_faces = [face.fake_probability for face in local.faces.faces]
        assert served_faces == pytest.approx(local_faces, abs=1e-4)


def test_explanations_return_grad_cam_pngs_for_the_most_suspicious_faces(server, fake_video):
    report = server.client.explain(fake_video.path, {"explain_faces": 2})
    explanations = report["explanations"]
    assert len(explanations) == 2
    face_probabilities = sorted(
        (f["fake_probability"] for fr in report["frames"] for f in fr["faces"]), reverse=True
    )
    assert [e["fake_probability"] for e in explanations] == face_probabilities[:2]
    for explanation in explanations:
        assert explanation["method"] == "grad-cam"
        heatmap = decode_image_base64(explanation["heatmap_png"])
        overlay = decode_image_base64(explanation["overlay_png"])
        assert heatmap.shape == overlay.shape == (160, 160, 3)
        assert heatmap.max() == 255  # normalised to its peak
        assert not np.array_equal(overlay, decode_image_base64(explanation["crop_png"]))


def test_custom_metrics_appear_on_the_metrics_endpoint(server, fake_video, no_face_video):
    server.client.predict(fake_video.path)
    server.client.predict(no_face_video.path)
    metrics = server.client.metrics()
    for name in (
        "DeepfakeFramesDecoded",
        "DeepfakeFacesFound",
        "DeepfakeNoFaceVideos",
        "DeepfakeDetectTime",
        "ts_inference_requests_total",
    ):
        assert f"\n{name}{{" in metrics, name
    no_face_lines = [line for line in metrics.splitlines() if line.startswith("DeepfakeNoFace")]
    assert float(no_face_lines[0].rsplit(" ", 1)[1]) >= 1


def test_calls_without_the_key_are_refused_and_an_expired_key_is_renewed(server, fake_video):
    address = server.client.address
    refused = requests.get(f"{address.inference_url}/ping", timeout=30)
    assert refused.status_code == 400 and "InvalidKeyException" in refused.text
    old_key = read_keys(address.key_file)["inference"]
    stale_client = DeepfakeClient(address)
    stale_client._keys = read_keys(address.key_file)
    server.client.renew_key("inference")
    new_key = read_keys(address.key_file)["inference"]
    assert new_key != old_key
    old = requests.get(
        f"{address.inference_url}/ping", headers={"Authorization": f"Bearer {old_key}"}, timeout=30
    )
    assert old.status_code == 400
    assert stale_client.ping()["status"] == "Healthy"  # renewed again and retried
    assert server.client.predict(fake_video.path)["label"] in ("fake", "real", "uncertain")


def test_two_workers_both_serve(server, sample_videos):
    client = server.client
    client.scale(2)
    try:
        assert client.ready_workers() >= 2
        before = _cpu_seconds(server)
        # Eight requests at once, so both workers get some.
        videos = [v.path for v in sample_videos if v.face_frames][:8]
        results: list[dict] = []
        threads = [
            threading.Thread(target=lambda p=path: results.append(client.predict(p, {"frames": 2})))
            for path in videos
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == len(videos)
        after = _cpu_seconds(server)
        busy = [pid for pid in before if after.get(pid, 0) - before[pid] > 0.2]
        assert len(busy) >= 2, (before, after)
    finally:
        client.scale(1)


def _cpu_seconds(server) -> dict[int, float]:
    """CPU seconds used so far by each of the server's Python workers."""
    seconds = {}
    for process in worker_processes(server):
        times = process.cpu_times()
        seconds[process.pid] = times.user + times.system
    return seconds


def test_a_second_server_runs_beside_the_first(server, model_store, fake_video, tmp_path):
    """Two TorchServes on one machine (a `make demo` server left running while the tests or
    `make bench` start their own): every port, gRPC's included, must differ."""
    with serving(tmp_path / "second", model_store, load_models="deepfake.mar") as second:
        for running in (server, second):
            report = running.client.predict(fake_video.path, {"frames": 1})
            assert report["label"] in {"fake", "real", "uncertain", "no_face"}
        first, other = (
            read_properties((running.workdir / "config.properties").read_text())
            for running in (server, second)
        )
        for key in PORT_KEYS:
            assert first[key] != other[key]


def test_a_second_version_is_served_beside_the_first_and_can_become_the_default(server, fake_video):
    client = server.client
    assert client.predict(fake_video.path, {"frames": 1})["model"]["version"] == "0.1.0"
    client.set_default_version("0.2.0")
    try:
        assert client.predict(fake_video.path, {"frames": 1})["model"]["version"] == "0.2.0"
        pinned = requests.post(
            f"{client.address.inference_url}/predictions/deepfake/0.1.0",
            data=fake_video.path.read_bytes(),
            headers={**client.auth_headers("inference"), "X-Deepfake-Frames": "1"},
            timeout=300,
        )
        assert pinned.json()["model"]["version"] == "0.1.0"
    finally:
        client.set_default_version("0.1.0")


def test_an_archive_with_a_checked_int8_model_serves_it(server, model_store, fake_video):
    with zipfile.ZipFile(model_store / "deepfake-v2.mar") as mar:
        int8 = json.loads(mar.read(ARCHIVE_INFO))["int8"]
        names = set(mar.namelist())
        timed = yaml.safe_load(mar.read("model-config.yaml"))["deepfake"]["engine"][
            "inference_path"
        ]
    assert int8["accepted"] and int8["max_probability_shift"] <= 0.02
    assert set(int8["sha256"]) == {INT8_MODEL_NAME, "classifier-int8.bin"} <= names
    url = f"{server.client.address.inference_url}/predictions/deepfake"
    headers = {**server.client.auth_headers("inference"), "X-Deepfake-Frames": "4"}
    body = fake_video.path.read_bytes()
    fp32, int8_report = (
        requests.post(f"{url}/{version}", data=body, headers=headers, timeout=300).json()
        for version in ("0.1.0", "0.2.0")
    )
    model = int8_report["model"]
    rates = model["measured_images_per_s"]  # both paths timed at worker start, fastest kept
    assert model["path_chosen_by"] == "measured" and set(rates) == set(timed.split(","))
    assert model["inference_path"] == max(rates, key=rates.get)
    assert model["precision"] == ("int8" if model["inference_path"] == "openvino-int8" else "fp32")
    assert int8_report["label"] == fp32["label"]
    assert int8_report["fake_probability"] == pytest.approx(fp32["fake_probability"], abs=0.02)


def test_client_cli_prints_verdicts_and_writes_a_contact_sheet(server, sample_videos, tmp_path):
    address = server.client.address
    videos = [v.path for v in sample_videos if v.name in ("a_still_multi_face.mp4",)]
    videos.append(next(v.path for v in sample_videos if not v.face_frames))
    sheet, results = tmp_path / "sheet.png", tmp_path / "results.txt"
    status = client_main(
        [
            *map(str, videos),
            "--inference-url", address.inference_url,
            "--management-url", address.management_url,
            "--key-file", str(address.key_file),
            "--sheet", str(sheet),
            "--output", str(results),
        ]
    )  # fmt: skip
    assert status == 0
    lines = results.read_text().splitlines()
    assert lines[0].startswith(str(videos[0])) and lines[0].split()[-1] in (
        "fake",
        "real",
        "uncertain",
    )
    people = [line for line in lines if line.startswith(f"{videos[0]}#person-")]
    assert len(people) == 5 and lines[1 : 1 + len(people)] == people  # the group photo's five
    assert lines[-1] == f"{videos[1]} no_face no_face"
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[1] >= 640
    assert image.shape[0] > 2 * 128  # a section with face tiles, and the no-face section


def test_client_cli_writes_an_evidence_report_with_its_record(server, one_face_video, tmp_path):
    address = server.client.address
    signed = tmp_path / "signed clip.mp4"
    signed.write_bytes(
        signing_authority().sign(one_face_video.path.read_bytes(), ai_video_manifest())
    )
    pdf = tmp_path / "reports" / "evidence.pdf"
    status = client_main(
        [
            str(signed), "--frames", "4",
            "--inference-url", address.inference_url,
            "--management-url", address.management_url,
            "--key-file", str(address.key_file),
            "--report", str(pdf),
        ]
    )  # fmt: skip
    assert status == 0 and pdf.read_bytes().startswith(b"%PDF")
    sidecar = json.loads((tmp_path / "reports" / "evidence.pdf.json").read_text())
    assert sidecar["report_pdf_sha256"] == hashlib.sha256(pdf.read_bytes()).hexdigest()
    record = sidecar["record"]
    assert record["file"]["name"] == "signed clip.mp4"
    assert record["file"]["sha256"] == hashlib.sha256(signed.read_bytes()).hexdigest()
    analysis = record["analysis"]  # the server's /explanations answer, with crops
    assert analysis["explanations"] and analysis["frames_analyzed"] == 4
    assert all("crop_jpeg" in face for frame in analysis["frames"] for face in frame["faces"])
    assert analysis["provenance"]["content_credentials"]["ai_generated"] is True


def test_container_healthcheck_passes_once_a_worker_is_ready(server):
    address = server.client.address
    arguments = ["--management-url", address.management_url, "--key-file", str(address.key_file)]
    assert healthcheck.main(arguments) == 0
    assert healthcheck.main([*arguments, "--model", "no-such-model"]) == 1  # 404: not ready
