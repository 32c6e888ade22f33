"""The web page in a real browser: real TorchServe and `python -m ui.app` on free loopback
ports, driven by Playwright in Debian's Chromium. Screenshots go to test-artifacts/ui/."""

from __future__ import annotations

import csv
import json
import os
import re
from hashlib import sha256
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect

from client.api import ServerAddress
from client.report import representative_crops
from client.sheet import decode_image_base64
from support.credentials import ai_video_manifest, signing_authority
from support.torchserve import REPO_ROOT, free_ports
from tests.ui_driver import (
    ANSWER_TIMEOUT_MS,
    analyse,
    browser,
    gallery_images,
    running_app,
    screenshot,
)
from ui import present

pytestmark = [pytest.mark.serving, pytest.mark.browser]
ARTIFACTS = Path(os.environ.get("UI_ARTIFACTS", REPO_ROOT / "test-artifacts" / "ui"))


@pytest.fixture(scope="module")
def page_and_server(server, tmp_path_factory, sample_videos):
    """The page in front of the shared TorchServe, in a real Chromium."""
    work = tmp_path_factory.mktemp("ui")
    [port] = free_ports(1)
    samples = sample_videos[0].path.parent.parent
    app = running_app(port, server.client.address, work / "ui.log", samples)
    with app as url, browser() as chromium:
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        yield page, url, server


def test_a_fake_sample_gets_its_verdict_and_face_gallery(page_and_server, sample_videos):
    page, url, server = page_and_server
    video = next(v for v in sample_videos if v.name == "a_fs_wolfgang_c1__grace_hopper.mp4")
    report = server.client.predict(video.path)  # what the server says, to compare the page to
    banner = analyse(page, url, video.path)
    screenshot(page, ARTIFACTS / "fake-sample.png")
    assert present.HEADLINES[report["label"]] in banner
    assert present.percent(report["fake_probability"]) in banner
    assert "self-blended images" in banner  # the caveat, as the model card says
    assert gallery_images(page, "faces") == report["faces_found"] > 0
    _assert_each_person_is_shown_whole(page, server, video.path, report)
    assert gallery_images(page, "explanations") == min(3, report["faces_found"])
    assert "deepfake-xception-test 0.1.0" in page.locator("#model-info").inner_text()


def _assert_each_person_is_shown_whole(page, server, video, report):
    """A card per person whose face is drawn whole at the card's size and is that person's
    representative crop (compared pixel by pixel with what the server sent), with its words."""
    crops = representative_crops(server.client.explain(video, {"crops": "true"}))
    faces = page.locator("#people .person-card img")
    assert faces.count() == len(report["people"]) == 1
    for index, person in enumerate(report["people"]):
        face = faces.nth(index)
        box = face.bounding_box()
        assert round(box["width"]) == round(box["height"]) == present.CARD_FACE_PX
        shown = cv2.imdecode(np.frombuffer(face.screenshot(), np.uint8), cv2.IMREAD_COLOR)
        sent = decode_image_base64(crops[person["person_id"]])[:, :, ::-1]  # RGB -> BGR
        expected = cv2.resize(sent, shown.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert shown.std() > 20  # a face, not a blank or a sliver of one
        assert np.abs(shown.astype(int) - expected.astype(int)).mean() < 20
        text = page.locator("#people .person-card").nth(index).inner_text()
        assert person["label"] in text and present.percent(person["fake_probability"]) in text
        assert f"seen {person['first_s']:.1f}-{person['last_s']:.1f} s" in text


def test_provenance_has_its_own_panel_and_the_evidence_report_downloads(
    page_and_server, one_face_video, tmp_path
):
    page, url, _ = page_and_server
    plain = analyse(page, url, one_face_video.path)
    assert "Content Credentials: none" in page.locator("#provenance").inner_text()
    assert "Content Credentials" not in plain  # the verdict's banner stays the verdict's
    signed = tmp_path / "generated.mp4"
    original = one_face_video.path.read_bytes()
    signed.write_bytes(signing_authority().sign(original, ai_video_manifest()))
    analyse(page, url, signed)
    panel = page.locator("#provenance").inner_text()
    screenshot(page, ARTIFACTS / "provenance.png")
    assert "signer not confirmed" in panel and "AI-generated" in panel
    assert "Example Video Generator 2.1" in panel
    report_files = page.locator("#evidence-report")
    expect(report_files).to_contain_text(re.compile(r"generated\.mp4\s*\.pdf"), timeout=60_000)
    downloaded = {}
    for link in report_files.locator("a").all():
        with page.expect_download() as download:
            link.click()
        downloaded[download.value.suggested_filename] = download.value.path().read_bytes()
    pdf, record = downloaded["generated.mp4.pdf"], json.loads(downloaded["generated.mp4.pdf.json"])
    assert pdf.startswith(b"%PDF") and record["report_pdf_sha256"] == sha256(pdf).hexdigest()
    assert record["record"]["file"]["sha256"] == sha256(signed.read_bytes()).hexdigest()


def test_a_video_without_faces_says_so(page_and_server, no_face_video):
    page, url, _ = page_and_server
    banner = analyse(page, url, no_face_video.path)
    screenshot(page, ARTIFACTS / "no-face.png")
    assert present.HEADLINES["no_face"] in banner
    assert gallery_images(page, "faces") == 0


def test_a_file_that_is_not_a_video_gets_the_servers_reason(page_and_server, tmp_path):
    page, url, _ = page_and_server
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("this is a text file, not a video\n" * 20)
    banner = analyse(page, url, text_file)
    screenshot(page, ARTIFACTS / "not-a-video.png")
    assert "Could not analyse this video" in banner
    assert "not a video file this server opens: the upload looks like text" in banner
    assert "Traceback" not in page.content()


def test_several_videos_give_a_table_and_a_csv(page_and_server, sample_videos, tmp_path):
    page, url, server = page_and_server
    video = next(v for v in sample_videos if v.name == "a_still_grace_hopper.mp4")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a video\n")
    page.goto(url)
    page.get_by_role("tab", name="Several videos").click()
    page.locator("#batch-input input[type=file]").set_input_files([str(video.path), str(text_file)])
    uploaded = re.compile(r"notes\s*\.txt")  # the page splits the name from its suffix
    expect(page.locator("#batch-input")).to_contain_text(uploaded, timeout=60_000)
    page.locator("#analyse-batch").click()
    csv_ready = re.compile(r"verdicts\s*\.csv")
    expect(page.locator("#batch-csv")).to_contain_text(csv_ready, timeout=ANSWER_TIMEOUT_MS)
    screenshot(page, ARTIFACTS / "batch.png")
    with page.expect_download() as download:
        page.locator("#batch-csv a").first.click()
    rows = list(csv.reader(download.value.path().read_text().splitlines()))
    report = server.client.predict(video.path)
    assert rows[0] == present.BATCH_COLUMNS
    assert rows[1][:2] == [video.name, report["label"]]
    assert float(rows[1][2]) == pytest.approx(report["fake_probability"], abs=1e-4)
    assert rows[2][:2] == ["notes.txt", "error"] and "not a video file" in rows[2][5]
    assert "notes.txt" in page.locator("#batch-table").inner_text().replace(" ", "")


def test_a_server_that_is_down_is_named_on_the_page(page_and_server, tmp_path):
    page, _, _ = page_and_server
    dead_inference, dead_management, app_port = free_ports(3)
    address = ServerAddress(
        inference_url=f"http://127.0.0.1:{dead_inference}",
        management_url=f"http://127.0.0.1:{dead_management}",
        key_file=None,
    )
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    with running_app(app_port, address, tmp_path / "ui.log") as url:
        banner = analyse(page, url, video)
    screenshot(page, ARTIFACTS / "server-down.png")
    assert f"not reachable at http://127.0.0.1:{dead_inference}" in banner
    assert "make serve" in banner


def test_an_expired_key_is_renewed_and_the_page_still_answers(page_and_server, one_face_video):
    page, url, server = page_and_server
    key_file = server.client.address.key_file
    stored = json.loads(key_file.read_text())
    stored["inference"]["key"] = "expired-key"  # what the server refuses once a key expires
    key_file.write_text(json.dumps(stored))
    banner = analyse(page, url, one_face_video.path)
    assert any(present.HEADLINES[label] in banner for label in ("fake", "real", "uncertain"))
    renewed = json.loads(key_file.read_text())["inference"]["key"]
    assert renewed != "expired-key"  # TorchServe wrote the key the page asked it to mint
