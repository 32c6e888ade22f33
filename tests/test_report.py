"""The evidence report on real analyses: the PDF opens and is not blank, names the file's
SHA-256 and the model, has a section per person and the provenance, and its JSON sidecar
holds the same record and the PDF's own SHA-256."""

from __future__ import annotations

import datetime
import hashlib
import json

import numpy as np
import pypdfium2
import pytest

from client.__main__ import report_paths
from client.report import LIMITATIONS, evidence_record, render_pdf, write_evidence_report
from model.service import DetectorService
from support.credentials import ai_video_manifest, damaged_manifest, signing_authority
from support.weights import seeded_network
from tests.test_service import TORCH_FP32

pytestmark = pytest.mark.integration  # every sample video it reads through the service: ~15 s


@pytest.fixture(scope="module")
def service() -> DetectorService:
    network, settings = seeded_network()
    return DetectorService(network, settings, TORCH_FP32, "ab" * 32)


def analysed(service, data: bytes) -> dict:
    return service.analyze(data, service.request(include_crops=True, explain_faces=2)).body


def pdf_text_and_first_page(pdf: bytes) -> tuple[str, np.ndarray, int]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        text = "".join(page.get_textpage().get_text_range() for page in document)
        first = np.asarray(document[0].render(scale=1).to_pil().convert("L"))
        return text, first, len(document)
    finally:
        document.close()


def test_a_signed_group_photo_gets_a_report_a_newsroom_can_file(service, sample_videos, tmp_path):
    video = next(v for v in sample_videos if v.name == "a_fs_still_multi_face__astronaut.mp4")
    data = signing_authority().sign(video.path.read_bytes(), ai_video_manifest("group.mp4"))
    body = analysed(service, data)
    record = evidence_record("group photo (signed).mp4", data, body)
    pdf_path = tmp_path / "report.pdf"
    sidecar = json.loads(write_evidence_report(record, pdf_path).read_text())
    pdf = pdf_path.read_bytes()
    text, first_page, pages = pdf_text_and_first_page(pdf)
    # Opens, and its first page is drawn: text and pictures, not a blank sheet.
    assert pages >= 2 and first_page.std() > 20 and (first_page < 128).mean() > 0.02
    assert hashlib.sha256(data).hexdigest() in text
    assert "deepfake-verdicts-test 0.0.0" in text and "ab" * 32 in text  # model and checkpoint
    assert [f"Person {n}" in text for n in range(1, 7)] == [True] * 5 + [False]  # five found
    assert len(body["people"]) == 5
    assert "Content Credentials" in text and "Test Newsroom Signer" in text
    assert "Example Video Generator 2.1" in text
    assert LIMITATIONS[0][:40] in text.replace("\r\n", " ").replace("\n", " ")
    # The sidecar: the same record, and the PDF it goes with.
    assert sidecar["record"] == json.loads(json.dumps(record))
    assert sidecar["report_pdf"] == "report.pdf"
    assert sidecar["report_pdf_sha256"] == hashlib.sha256(pdf).hexdigest()
    assert sidecar["record"]["file"] == {
        "name": "group photo (signed).mp4",
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    analysed_at = datetime.datetime.fromisoformat(record["analysed_at"])
    assert analysed_at.tzinfo is not None  # UTC, said so


def test_a_video_without_faces_still_gets_a_report(service, no_face_video):
    data = no_face_video.path.read_bytes()
    text, _, _ = pdf_text_and_first_page(
        render_pdf(evidence_record("x.mp4", data, analysed(service, data)))
    )
    assert "No face found: nothing to judge (no_face)" in text and "Person 1" not in text
    assert "Content Credentials" in text and "none" in text


def test_reports_go_to_a_file_for_one_video_and_a_folder_for_several(tmp_path):
    one = tmp_path / "a" / "clip.mp4"
    assert report_paths(tmp_path / "out" / "r.pdf", [one]) == {one: tmp_path / "out" / "r.pdf"}
    two = tmp_path / "b" / "clip.mp4"
    folder = report_paths(tmp_path / "reports", [one, two])
    assert folder == {
        one: tmp_path / "reports" / "clip.mp4.pdf",
        two: tmp_path / "reports" / "2-clip.mp4.pdf",
    }
    assert (tmp_path / "reports").is_dir()


def test_unreadable_credentials_are_reported_without_a_made_up_signer(service, one_face_video):
    signed = signing_authority().sign(one_face_video.path.read_bytes(), ai_video_manifest())
    damaged = damaged_manifest(signed)
    text, _, _ = pdf_text_and_first_page(
        render_pdf(evidence_record("damaged.mp4", damaged, analysed(service, damaged)))
    )
    assert "unreadable: the file carries Content Credentials that cannot be read" in text
    assert "issued by" not in text and "Claim generator" not in text
