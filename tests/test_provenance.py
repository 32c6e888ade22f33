"""Provenance on real files: videos signed here with c2pa-python (a test CA made by the test),
the same files changed after signing, damaged or oversized manifests, plain sample videos, and
what their containers say. None of it may fail a request or change a score."""

from __future__ import annotations

import random

import av
import pytest

from model.container import edit_lists, iter_boxes
from model.credentials import C2PA_UUID, CredentialsConfig
from model.provenance import ProvenanceReader
from model.service import DetectorService
from support.credentials import (
    SIGNER_NAME,
    ai_video_manifest,
    changed_after_signing,
    damaged_manifest,
    oversized_manifest_box,
    signing_authority,
)
from support.video_factory import encode_video, grace_hopper_rgb
from support.weights import seeded_network
from tests.test_service import TORCH_FP32


@pytest.fixture(scope="module")
def reader() -> ProvenanceReader:
    return ProvenanceReader(CredentialsConfig())


@pytest.fixture(scope="module")
def plain(sample_videos) -> bytes:
    return next(v for v in sample_videos if v.name == "a_wolfgang_c1.mp4").path.read_bytes()


@pytest.fixture(scope="module")
def signed(plain) -> bytes:
    return signing_authority().sign(plain, ai_video_manifest("interview.mp4"))


def test_a_signed_video_reads_back_with_its_generator_signer_and_actions(reader, signed):
    credentials = reader.read(signed).credentials
    assert credentials.present and credentials.status == "untrusted"  # no trust list here
    assert "checks signers against no trust list" in credentials.summary
    assert credentials.claim_generator == "example-generator 2.1"
    assert credentials.title == "interview.mp4"
    assert credentials.signer["subject"] == SIGNER_NAME
    assert credentials.signer["algorithm"].lower() == "es256"
    [created] = credentials.actions
    assert created["action"] == "c2pa.created"
    assert created["digital_source_type"] == "trainedAlgorithmicMedia"
    assert created["software_agent"] == "Example Video Generator 2.1"
    assert credentials.ai_generated and credentials.manifests == 1 and not credentials.problems


def test_a_signer_on_the_configured_trust_list_is_trusted(signed, tmp_path):
    anchors = tmp_path / "trust.pem"
    anchors.write_text(signing_authority().ca_pem)
    trusting = ProvenanceReader(CredentialsConfig(trust_anchors=str(anchors)))
    assert trusting.read(signed).credentials.status == "trusted"
    other = tmp_path / "other.pem"  # a list without this signer's root
    other.write_text(signing_authority.__wrapped__().ca_pem)
    elsewhere = ProvenanceReader(CredentialsConfig(trust_anchors=str(other))).read(signed)
    assert elsewhere.credentials.status == "untrusted"
    assert "not on this server's trust list" in elsewhere.credentials.summary
    with pytest.raises(FileNotFoundError, match="trust_anchors: no such PEM file"):
        ProvenanceReader(CredentialsConfig(trust_anchors=str(tmp_path / "missing.pem")))


def test_bytes_changed_after_signing_read_as_tampered(reader, signed):
    credentials = reader.read(changed_after_signing(signed)).credentials
    assert credentials.status == "tampered" and "changed after it was signed" in credentials.summary
    assert any("mismatch" in problem["code"] for problem in credentials.problems)


def test_a_plain_sample_video_has_no_credentials_and_says_so_calmly(reader, plain):
    provenance = reader.read(plain).as_json()
    credentials = provenance["content_credentials"]
    assert (credentials["present"], credentials["status"]) == (False, "none")
    assert credentials["summary"] == "no Content Credentials: the file carries none"


def test_damaged_or_oversized_manifests_are_unreadable_not_errors(reader, signed, plain):
    damaged = reader.read(damaged_manifest(signed)).credentials
    assert damaged.status == "unreadable" and "cannot be read" in damaged.summary
    huge = reader.read(oversized_manifest_box(plain, 9 * 2**20)).credentials
    assert huge.status == "unreadable" and "9.0 MB, more than the 8 MB" in huge.summary


def test_a_container_without_embedded_credentials_is_not_searched(reader):
    webm = encode_video([grace_hopper_rgb()] * 5, container="webm", codec="libvpx-vp9")
    provenance = reader.read(webm)
    assert provenance.credentials.status == "unsupported" and not provenance.credentials.present
    assert provenance.container.format.startswith("matroska")


def test_the_container_facts_are_ffmpegs_and_the_edit_lists_the_files(reader, plain):
    facts = reader.read(plain).container.as_json()
    assert facts["format_long_name"] == "QuickTime / MOV"
    assert (facts["major_brand"], facts["encoder"]) == ("isom", "Lavf62.12.102")
    [stream] = facts["streams"]
    assert (stream["type"], stream["codec"], stream["width"], stream["height"]) == (
        "video",
        "h264",
        640,
        360,
    )
    assert stream["tags"]["handler_name"] == "VideoHandler"
    # FFmpeg's muxer writes one edit that skips the B-frame delay: 2 frames at 23.976 fps.
    [edits] = facts["edit_lists"]
    [entry] = edits["entries"]
    assert entry["media_time_s"] == pytest.approx(2 / 23.976, abs=1e-3)
    assert entry["segment_s"] == pytest.approx(stream["duration_s"], abs=0.01)


def test_the_movie_headers_times_are_read_where_the_file_sets_them(reader, plain):
    stamped = encode_video(
        [grace_hopper_rgb()] * 5, metadata={"creation_time": "2026-11-30T09:15:00.000000Z"}
    )
    facts = reader.read(stamped).container.as_json()
    assert facts["creation_time"] == "2026-11-30T09:15:00.000000Z"  # FFmpeg's tag
    assert facts["movie_created"] == "2026-11-30T09:15:00+00:00"  # the mvhd box itself
    assert facts["movie_modified"] == "2026-11-30T09:15:00+00:00"
    unset = reader.read(plain).container.as_json()
    assert unset["movie_created"] is None and unset["movie_modified"] is None  # 0: not set


def test_audio_streams_are_listed_too():
    frames = [grace_hopper_rgb()] * 10
    video = encode_video(frames, audio_seconds=0.4)
    with av.open(__import__("io").BytesIO(video)) as container:
        assert container.streams.audio  # the factory muxed one
    facts = ProvenanceReader(CredentialsConfig(enabled=False)).read(video)
    assert facts.credentials is None  # reading credentials turned off: not looked for
    kinds = [stream["type"] for stream in facts.container.as_json()["streams"]]
    assert sorted(kinds) == ["audio", "video"]
    audio = next(s for s in facts.container.streams if s["type"] == "audio")
    assert audio["sample_rate"] == 16000 and audio["channels"] == 1


def test_the_box_walker_stops_at_a_box_that_runs_past_the_end():
    good = b"\x00\x00\x00\x10free" + bytes(8)
    lying = b"\x00\x00\x10\x00mdat" + bytes(8)  # claims 4096 bytes, has 16
    assert [box.kind for box in iter_boxes(good + lying)] == [b"free"]
    assert edit_lists(good) == [] and edit_lists(b"") == []


@pytest.mark.integration
def test_the_response_carries_provenance_beside_an_unchanged_verdict(plain, signed):
    network, settings = seeded_network()
    service = DetectorService(network, settings, TORCH_FP32, "0" * 64)
    original, credentialed = service.analyze(plain).body, service.analyze(signed).body
    assert credentialed["schema_version"] == "1.3"
    assert credentialed["provenance"]["content_credentials"]["status"] == "untrusted"
    assert original["provenance"]["content_credentials"]["status"] == "none"
    # Signing rewrites the container, never the pictures: the same verdict to the digit.
    assert credentialed["fake_probability"] == original["fake_probability"]
    assert credentialed["timing_ms"]["provenance"] < 1000


def test_scrambled_manifests_never_raise_from_the_reader(reader, signed):
    """60 seeded mutations of the manifest's bytes (1 to 64 bytes each): every one reads as a
    status (300 more run by hand read as unreadable, tampered or untrusted, none raised)."""
    start = signed.index(C2PA_UUID) - 8
    size = int.from_bytes(signed[start : start + 4], "big")
    rng = random.Random(0)
    seen = set()
    for _ in range(60):
        mutated = bytearray(signed)
        for _ in range(rng.choice([1, 4, 16, 64])):
            mutated[rng.randrange(start + 24, start + size)] = rng.randrange(256)
        seen.add(reader.read(bytes(mutated)).credentials.status)
    assert seen <= {"unreadable", "tampered", "untrusted", "invalid"} and "unreadable" in seen
