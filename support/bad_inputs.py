"""The bad-input corpus: every kind of upload an internet-facing server must survive, made by
code (nothing binary is committed), with the answer the server owes each one."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from support.credentials import (
    ai_video_manifest,
    changed_after_signing,
    damaged_manifest,
    oversized_manifest_box,
    signing_authority,
)
from support.video_factory import (
    blank_frames,
    encode_audio_only,
    encode_image,
    encode_video,
    grace_hopper_rgb,
)

CORPUS_MAX_REQUEST_BYTES = 40_000_000  # max_request_size of the tests' shared server
# Credentials an operator's shell may hold; config.properties' blacklist_env_vars must keep
# them out of the workers, and nothing may echo them.
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "corpus-aws-secret-5f1c",
    "MLFLOW_TRACKING_TOKEN": "corpus-mlflow-token-9a2e",
    "MLFLOW_TRACKING_PASSWORD": "corpus-mlflow-password-77b0",
}


@dataclass(frozen=True)
class Case:
    """One upload and what the server must answer: `status`, and either the JSON `error` kind
    with a message matching `message`, or for 200 the verdict `label`."""

    name: str
    make: Callable[[], bytes]
    status: int
    error: str | None = None
    message: str | None = None
    label: str | None = None  # for 200: "no_face", or "face" for any verdict on faces
    send: str = "raw"  # raw | multipart_wrong_field | json | text
    credentials: str | None = None  # for 200: the Content Credentials status it must read as


def face_clip(frames: int = 12, width: int = 640) -> bytes:
    portrait = _fit(grace_hopper_rgb(), width, width * 9 // 16)
    return encode_video([np.roll(portrait, i, axis=1) for i in range(frames)])


def ten_faces() -> bytes:
    """Ten portraits in a 5 x 2 grid on a 1280 x 720 canvas."""
    tile = cv2.resize(grace_hopper_rgb(), (256, 300), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((720, 1280, 3), dtype=np.uint8)
    for row in range(2):
        for col in range(5):
            canvas[60 + row * 320 : 360 + row * 320, col * 256 : (col + 1) * 256] = tile
    return encode_video([canvas] * 4)


def concat_script(name: str) -> bytes:
    return f"ffconcat version 1.0\nfile {name}\n".encode()


def hls_playlist() -> bytes:
    """A media playlist whose segments FFmpeg's HLS demuxer would fetch from the network and
    from the worker's files."""
    return (
        b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/segment.ts\n"
        b"#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    )


def self_referencing_playlist() -> bytes:
    """A master playlist whose only variant is itself (an FFmpeg open loop, CVE-2026-107695)."""
    return b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nplaylist.m3u8\n"


def avi_with_playlist() -> bytes:
    """An AVI whose one stream is a GAB2 subtitle holding an HLS playlist: the AVI demuxer
    probes GAB2 payloads with a nested demuxer (the 2017 FFmpeg SSRF), so the allow-list of
    nested demuxers is what keeps the playlist closed; the file has no video to score."""
    payload = b"GAB2\x00\x02\x00" + struct.pack("<I", 0) + struct.pack("<HI", 4, 0)
    payload += hls_playlist()
    stream_header = _riff_chunk(
        b"strh",
        b"txts"
        + bytes(4)
        + struct.pack("<IHHIIIIIIIi", 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0)
        + bytes(8),
    )
    header_list = _riff_list(
        b"hdrl",
        _riff_chunk(b"avih", struct.pack("<10I", 40000, 0, 0, 0, 1, 0, 1, 0, 64, 48) + bytes(16))
        + _riff_list(b"strl", stream_header + _riff_chunk(b"strf", b"")),
    )
    movie = _riff_list(b"movi", _riff_chunk(b"00tx", payload))
    body = b"AVI " + header_list + movie
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    padding = b"\x00" if len(data) % 2 else b""
    return kind + struct.pack("<I", len(data)) + data + padding


def _riff_list(kind: bytes, data: bytes) -> bytes:
    return _riff_chunk(b"LIST", kind + data)


def pixel_bomb() -> bytes:
    """A few kilobytes that decode to 7680 x 4320 frames (33 megapixels each)."""
    return encode_video(blank_frames(2, width=7680, height=4320), fps=1)


def duration_bomb() -> bytes:
    """Two tiny frames an hour apart: a container that claims a 1-hour video."""
    return encode_video(blank_frames(2), frame_times_s=[0.0, 3600.0])


def corrupt_moov(data: bytes) -> bytes:
    """Overwrite the movie header's box contents (sizes, track tables) with junk."""
    start = data.index(b"moov") + 4
    junk = np.random.default_rng(1).bytes(min(2000, len(data) - start))
    return data[:start] + junk + data[start + len(junk) :]


def truncated(fraction: float) -> bytes:
    data = face_clip(frames=30)
    return data[: int(len(data) * fraction)]


def _fit(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """The portrait centred on a black canvas of the given size."""
    scale = min(width / rgb.shape[1], height / rgb.shape[0])
    small = cv2.resize(rgb, (int(rgb.shape[1] * scale), int(rgb.shape[0] * scale)))
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    y, x = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return canvas


def _rotated_face_clip() -> bytes:
    """Stored sideways with a display matrix saying 'turn 90 degrees' (as phones record)."""
    upright = _fit(grace_hopper_rgb(), 640, 360)
    return encode_video([np.ascontiguousarray(np.rot90(upright, k=-1))] * 6, rotation=90)


def signed_clip(extra_assertions: list | None = None) -> bytes:
    return signing_authority().sign(face_clip(), ai_video_manifest(extra=extra_assertions))


def signed_image() -> bytes:
    png = encode_image(grace_hopper_rgb(), ".png")
    return signing_authority().sign(png, ai_video_manifest("photo.png"), "image/png")


UNKNOWN_ASSERTION = {"label": "com.example.unheard-of", "data": {"anything": [1, "two", None]}}


def _variable_frame_rate() -> bytes:
    portrait = _fit(grace_hopper_rgb(), 640, 360)
    times = [0.0, 0.04, 0.08, 0.5, 0.55, 1.5, 1.52, 3.0]
    return encode_video([portrait] * len(times), frame_times_s=times)


CORPUS = [
    Case("empty body", lambda: b"", 400, "empty_body", "0 bytes"),
    Case("1 byte", lambda: b"\x00", 400, "invalid_video", "not a video file"),
    Case(
        "random bytes",
        lambda: np.random.default_rng(0).bytes(100_000),
        415,
        "unsupported_format",
        "no known video container",
    ),
    Case(
        "PNG image",
        lambda: encode_image(grace_hopper_rgb(), ".png"),
        415,
        "unsupported_format",
        "looks like a PNG image",
    ),
    Case(
        "JPEG image",
        lambda: encode_image(grace_hopper_rgb(), ".jpg"),
        415,
        "unsupported_format",
        "looks like a JPEG image",
    ),
    Case(
        "text file",
        lambda: b"just some text, not a video\n" * 100,
        415,
        "unsupported_format",
        "looks like text",
    ),
    # Nested opens: FFmpeg would open other files or URLs by name for these (issue: a concat
    # script naming a file in the worker's folder was an existence oracle). All refused by
    # their first bytes, with one answer whether or not the named file exists.
    Case(
        "FFmpeg concat script naming a file that exists",
        lambda: concat_script("MAR-INF/MANIFEST.json"),  # in every worker's model folder
        415,
        "unsupported_format",
        "FFmpeg concat script",
    ),
    Case(
        "FFmpeg concat script naming a missing file",
        lambda: concat_script("no-such-file.json"),
        415,
        "unsupported_format",
        "FFmpeg concat script",
    ),
    Case("HLS playlist", hls_playlist, 415, "unsupported_format", "HLS playlist"),
    Case(
        "self-referencing HLS playlist",
        self_referencing_playlist,
        415,
        "unsupported_format",
        "HLS playlist",
    ),
    Case(
        "AVI carrying an HLS playlist in a GAB2 subtitle",
        avi_with_playlist,
        400,
        "invalid_video",
        "no video stream",
    ),
    Case("mp4 cut at 10%", lambda: truncated(0.1), 400, "invalid_video", "truncated"),
    Case("mp4 cut at 50%", lambda: truncated(0.5), 400, "invalid_video", "truncated"),
    Case("mp4 cut at 90%", lambda: truncated(0.9), 400, "invalid_video", "truncated"),
    Case(
        "corrupted moov atom",
        lambda: corrupt_moov(face_clip()),
        400,
        "invalid_video",
        "not a video|corrupt|truncated|no decodable frame|no video stream",
    ),
    Case("audio only", encode_audio_only, 400, "invalid_video", "only audio"),
    # Found by `make fuzz`: a video track whose codec FFmpeg does not know was a 500.
    Case(
        "video track with an unknown codec tag",
        lambda: face_clip().replace(b"avc1", b"zzzz"),
        400,
        "invalid_video",
        "codec is unknown",
    ),
    Case("1-frame video", lambda: face_clip(frames=1), 200, label="face"),
    Case("16x16 video", lambda: encode_video(blank_frames(10, 16, 16)), 200, label="no_face"),
    Case(
        "4K video",
        lambda: encode_video([_fit(grace_hopper_rgb(), 3840, 2160)] * 3),
        200,
        label="face",
    ),
    Case(
        "60-second video",
        lambda: encode_video(blank_frames(60 * 25, 64, 48), fps=25),
        200,
        label="no_face",
    ),
    Case("rotated 90 degrees by metadata", _rotated_face_clip, 200, label="face"),
    Case("variable frame rate", _variable_frame_rate, 200, label="face"),
    Case("no face", lambda: encode_video(blank_frames(20, 320, 240)), 200, label="no_face"),
    Case("10 faces", ten_faces, 200, label="face"),
    Case("pixel bomb (8K frames)", pixel_bomb, 413, "video_too_large", "megapixels"),
    Case("duration bomb (claims 1 hour)", duration_bomb, 413, "video_too_large", "3600 s long"),
    Case(
        "larger than max_request_size",
        lambda: bytes(CORPUS_MAX_REQUEST_BYTES + 1_000_000),
        413,
    ),
    Case("signed video", signed_clip, 200, label="face", credentials="untrusted"),
    Case(
        "signed video changed after signing",
        lambda: changed_after_signing(signed_clip()),
        200,
        label="face",
        credentials="tampered",
    ),
    Case(
        "malformed Content Credentials",
        lambda: damaged_manifest(signed_clip()),
        200,
        label="face",
        credentials="unreadable",
    ),
    Case(
        "oversized Content Credentials box (9 MB)",
        lambda: oversized_manifest_box(face_clip(), 9 * 2**20),
        200,
        label="face",
        credentials="unreadable",
    ),
    Case(
        "unknown assertion in Content Credentials",
        lambda: signed_clip([UNKNOWN_ASSERTION]),
        200,
        label="face",
        credentials="untrusted",
    ),
    Case(
        "Content Credentials in a PNG image",
        signed_image,
        415,
        "unsupported_format",
        "looks like a PNG image",
    ),
    Case(
        "multipart with the wrong field name",
        face_clip,
        400,
        "missing_video",
        "data",
        send="multipart_wrong_field",
    ),
    Case(
        "video labelled Content-Type application/json",
        face_clip,
        415,
        "unsupported_media_type",
        "Content-Type application/json is not a video",
        send="json",
    ),
    Case(
        "video labelled Content-Type text/plain",
        face_clip,
        415,
        "unsupported_media_type",
        "Content-Type text/plain is not a video",
        send="text",
    ),
]


def matches(case: Case, message: str) -> bool:
    return case.message is None or re.search(case.message, message, re.IGNORECASE) is not None
