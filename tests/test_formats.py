"""Uploads open only as the documented containers, by their own demuxer, with no nested opens."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from model.errors import UnsupportedFormatError, VideoInputError
from model.formats import ACCEPTED, DEMUXER_OPTIONS, container_format, open_container
from model.video import VideoReader
from support.bad_inputs import concat_script, hls_playlist, self_referencing_playlist
from support.video_factory import blank_frames, encode_image, encode_video, grace_hopper_rgb

ACCEPTED_VIDEOS = {
    "mp4": ("mp4", "libx264", "MP4/MOV/3GP"),
    "mov": ("mov", "libx264", "MP4/MOV/3GP"),
    "3gp": ("3gp", "libx264", "MP4/MOV/3GP"),
    "mkv": ("matroska", "libx264", "Matroska/WebM"),
    "webm": ("webm", "libvpx-vp9", "Matroska/WebM"),
    "avi": ("avi", "mpeg4", "AVI"),
}


@pytest.mark.parametrize("kind", ACCEPTED_VIDEOS)
def test_each_documented_container_opens_by_its_own_demuxer(kind):
    container, codec, name = ACCEPTED_VIDEOS[kind]
    data = encode_video(blank_frames(6, 64, 48), container=container, codec=codec)
    assert container_format(data).name == name
    with VideoReader(data) as reader:
        assert reader.info.frame_count == 6
        assert reader.info.container == container_format(data).demuxer


def test_a_file_opens_from_a_path_without_ffmpegs_file_protocol(tmp_path):
    # The protocol whitelist is empty: a path opened by name would fail, so this passing
    # means the file was mapped and read as bytes.
    path = tmp_path / "clip.mp4"
    path.write_bytes(encode_video(blank_frames(4, 64, 48)))
    with open_container(path) as container:
        assert container.streams.video[0].frames == 4
    with pytest.raises(av.FFmpegError):
        av.open(str(path), container_options=DEMUXER_OPTIONS)


@pytest.mark.parametrize(
    ("make", "detected"),
    [
        (lambda: concat_script("MAR-INF/MANIFEST.json"), "an FFmpeg concat script"),
        (hls_playlist, "an M3U/HLS playlist"),
        (self_referencing_playlist, "an M3U/HLS playlist"),
        (lambda: encode_image(grace_hopper_rgb(), ".png"), "a PNG image"),
        (lambda: encode_image(grace_hopper_rgb(), ".jpg"), "a JPEG image"),
        (
            lambda: encode_video(blank_frames(4, 64, 48), container="mpegts"),
            "an MPEG transport stream",
        ),
        (
            lambda: encode_video(blank_frames(4, 64, 48), container="flv", codec="flv"),
            "an FLV file",
        ),
        (
            lambda: b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00" + bytes(40),
            "a HEIF/AVIF image (brand avif)",
        ),
        (lambda: b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40), "a RIFF file of kind 'WAVE'"),
        (lambda: b"plain words, no video\n" * 4, "text"),
        (lambda: np.random.default_rng(1).bytes(4096), "bytes of no known video container"),
    ],
)
def test_anything_else_is_refused_before_ffmpeg_reads_it(make, detected):
    data = make()
    with pytest.raises(UnsupportedFormatError) as refused:
        VideoReader(data)
    assert refused.value.detected.startswith(detected)
    message = str(refused.value)
    assert all(f.name in message for f in ACCEPTED) and "ffmpeg -i in -c copy out.mp4" in message


def test_too_few_bytes_are_no_video():
    with pytest.raises(VideoInputError, match="too short"):
        container_format(b"\x1a\x45\xdf\xa3")


def test_the_whitelists_reach_ffmpeg():
    # Probing (as a nested demuxer does) finds only allowed demuxers. Without the options a
    # concat script makes FFmpeg look the named file up (the existence oracle); with them it
    # is refused as a format before any file is looked up.
    script = concat_script("no-such-file.json")
    with pytest.raises(av.FileNotFoundError):
        av.open(io.BytesIO(script), mode="r")
    with pytest.raises(av.FFmpegError) as refused:
        av.open(io.BytesIO(script), mode="r", container_options=DEMUXER_OPTIONS)
    assert not isinstance(refused.value, av.FileNotFoundError)


def test_open_container_hands_ffmpeg_the_whitelists(monkeypatch, one_face_video):
    # FFmpeg honours the options (above); here, every open of an upload passes them, and the
    # one demuxer its first bytes named.
    opened = []
    real_open = av.open

    def recording_open(*args, **kwargs):
        opened.append(kwargs)
        return real_open(*args, **kwargs)

    monkeypatch.setattr("model.formats.av.open", recording_open)
    with open_container(one_face_video.path) as container:
        assert container.streams.video
    [options] = opened
    assert options["container_options"] == DEMUXER_OPTIONS
    assert options["format"] == "mov,mp4,m4a,3gp,3g2,mj2"
    assert DEMUXER_OPTIONS["protocol_whitelist"] == "" and DEMUXER_OPTIONS["enable_drefs"] == "0"


def test_the_ffmpeg_versions_in_the_wheels_are_the_ones_security_md_records():
    import re

    import cv2

    from support.torchserve import REPO_ROOT

    record = (REPO_ROOT / "docs" / "security.md").read_text()
    pyav = re.search(r"\| av [\d.]+ \(PyAV\) \| \*\*([\d.]+)\*\* \(libavformat ([\d.]+)", record)
    assert pyav, "docs/security.md lost its PyAV FFmpeg row"
    assert pyav.group(1) == av.ffmpeg_version_info, "PyAV's FFmpeg changed: update the CVE record"
    assert pyav.group(2) == ".".join(map(str, av.library_versions["libavformat"]))
    opencv = re.search(r"\| opencv-python-headless [\d.]+ \| libavformat ([\d.]+)", record)
    built = re.search(r"avformat:\s+YES \(([\d.]+)\)", cv2.getBuildInformation())
    assert opencv and built and opencv.group(1) == built.group(1), "OpenCV's FFmpeg changed"
