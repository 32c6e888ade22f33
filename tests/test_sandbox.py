"""Decoding in a confined child process: the same frames, errors that cross cleanly, and a
child that crashes, hangs or runs out of memory ends only its own video."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from model.errors import (
    DecoderCrashedError,
    UnsupportedFormatError,
    VideoInputError,
    VideoLimitError,
)
from model.sandbox import DecoderSandbox
from model.sandbox_child import SandboxConfig
from model.video import SamplingConfig, VideoLimits, VideoReader
from support.bad_inputs import _rotated_face_clip, concat_script, pixel_bomb, truncated
from support.torchserve import REPO_ROOT
from support.video_factory import blank_frames, encode_image, encode_video, grace_hopper_rgb

EVERY_5TH = SamplingConfig.exactly_every(5, max_frames=12)


@pytest.fixture(scope="module")
def sandbox():
    decoder = DecoderSandbox()
    decoder.start()
    yield decoder
    decoder.close()


def _frames(reader, sampling=EVERY_5TH):
    with reader:
        return reader.info, reader.facts, list(reader.sample(sampling))


def test_the_sandbox_decodes_the_same_frames_as_the_worker(sandbox, one_face_video):
    for video in (one_face_video.path.read_bytes(), _rotated_face_clip(), one_face_video.path):
        expected = _frames(VideoReader(video, 2))
        got = _frames(sandbox.open(video, 2))
        assert got[0] == expected[0] and got[1] == expected[1]  # info, container facts
        assert [f.index for f in got[2]] == [f.index for f in expected[2]]
        for ours, theirs in zip(got[2], expected[2], strict=True):
            assert ours.timestamp_s == theirs.timestamp_s
            np.testing.assert_array_equal(ours.rgb, theirs.rgb)
    assert sandbox.confined == {"rlimits": True, "network_namespace": True, "seccomp": True}


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: encode_image(grace_hopper_rgb(), ".png"), UnsupportedFormatError, "PNG image"),
        (lambda: concat_script("x.json"), UnsupportedFormatError, "FFmpeg concat script"),
        (lambda: truncated(0.5), VideoInputError, "truncated"),
        (pixel_bomb, VideoLimitError, "megapixels"),
    ],
)
def test_errors_cross_as_the_worker_would_raise_them(sandbox, make, error, message):
    with pytest.raises(error, match=message) as raised:
        _frames(sandbox.open(make()))
    assert type(raised.value) is error
    if error is UnsupportedFormatError:
        assert raised.value.detected in message or message in raised.value.detected


def test_a_worker_slower_than_the_child_still_gets_every_frame(sandbox, one_face_video):
    # Two frames fit the two shared slots: the child sends both and "done" and exits before
    # the worker has copied the first one out and handed its slot back.
    sampling = SamplingConfig.exactly_every(5, max_frames=2)
    expected = _frames(VideoReader(one_face_video.path, 1), sampling)[2]
    with sandbox.open(one_face_video.path, 1) as reader:
        got = []
        for frame in reader.sample(sampling):
            time.sleep(0.5)
            got.append(frame)
    assert [f.index for f in got] == [f.index for f in expected]
    for ours, theirs in zip(got, expected, strict=True):
        np.testing.assert_array_equal(ours.rgb, theirs.rgb)


def test_a_crashed_decoder_ends_its_video_only(sandbox, one_face_video):
    reader = sandbox.open(one_face_video.path, 1)
    frames = reader.sample(SamplingConfig.exactly_every(1, max_frames=50))
    next(frames)
    reader_pid = reader.pid

    os.kill(reader_pid, signal.SIGSEGV)  # as a decoder bug would end it
    with pytest.raises(DecoderCrashedError, match="SIGSEGV"):
        list(frames)
    reader.close()
    assert len(_frames(sandbox.open(one_face_video.path))[2]) > 0  # the next video decodes


def test_a_decoder_past_its_deadline_is_stopped(sandbox, one_face_video):
    slow = VideoLimits(max_decode_s=0.001)
    with pytest.raises(VideoLimitError, match="longer than") as raised:
        _frames(sandbox.open(one_face_video.path, 1, slow), SamplingConfig.exactly_every(1))
    assert raised.value.code == "decode_timeout" and raised.value.status == 422
    assert len(_frames(sandbox.open(one_face_video.path))[2]) > 0


def test_a_decoder_over_its_memory_limit_ends_cleanly():
    small = DecoderSandbox(SandboxConfig(memory_mb=300))  # a small clip fits, 4K does not
    try:
        big = encode_video(blank_frames(3, 3840, 2160))
        # FFmpeg reports a failed allocation in its own words (out of memory, invalid data),
        # Python as MemoryError (decode_memory_limit): each is a 4xx, never a dead worker.
        with pytest.raises(VideoInputError):
            _frames(small.open(big))
        assert len(_frames(small.open(encode_video(blank_frames(3, 64, 48))))[2]) == 1
    finally:
        small.close()


# As the zygote does: fork, then confine the child (a fork has one thread, as unshare needs).
CONFINED_PROBE = """
import json, os, socket, sys
from model.sandbox_child import SandboxConfig, confine
read_end, write_end = os.pipe()
if os.fork() == 0:
    outcome = {"confined": confine(SandboxConfig()).__dict__}
    def attempt(name, action):
        try:
            action()
            outcome[name] = "allowed"
        except OSError as error:
            outcome[name] = error.strerror
    attempt("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    attempt("write_file", lambda: open(sys.argv[1] + "/written", "w"))
    attempt("read_file", lambda: open(sys.argv[2]).read())
    attempt("fork", os.fork)
    attempt("unlink", lambda: os.unlink(sys.argv[2]))
    attempt("exec", lambda: os.execv("/bin/true", ["true"]))
    os.write(write_end, json.dumps(outcome).encode())
    os._exit(0)
os.close(write_end)
print(os.read(read_end, 65536).decode())
"""


def test_a_confined_child_has_no_network_no_writes_and_no_new_processes(tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("still here")
    probe = subprocess.run(
        [sys.executable, "-c", CONFINED_PROBE, str(tmp_path), str(keep)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    outcome = json.loads(probe.stdout)
    assert outcome["confined"] == {"rlimits": True, "network_namespace": True, "seccomp": True}
    assert outcome["read_file"] == "allowed"
    for refused in ("socket", "write_file", "fork", "unlink", "exec"):
        assert outcome[refused] != "allowed", (refused, outcome)
    assert keep.read_text() == "still here" and not (tmp_path / "written").exists()


def test_provenance_is_read_in_the_child_as_the_worker_would_read_it(sandbox):
    from model.credentials import CredentialsConfig
    from model.provenance import ProvenanceReader
    from support.bad_inputs import signed_clip

    video = signed_clip()
    with sandbox.open(video) as reader:
        from_child = reader.provenance
    with VideoReader(video) as reader:
        in_worker = ProvenanceReader(CredentialsConfig()).read(video, reader.facts)
    assert from_child.credentials.status == "untrusted"
    assert from_child == in_worker


def test_a_dead_zygote_is_replaced_and_a_stuck_one_is_a_server_error(one_face_video, monkeypatch):
    import model.sandbox

    decoder = DecoderSandbox()
    try:
        decoder.start()
        first = decoder.zygote_pid
        os.kill(first, signal.SIGKILL)
        os.waitpid(first, 0)  # dead before the next video: it starts a fresh zygote
        assert len(_frames(decoder.open(one_face_video.path))[2]) > 0
        assert decoder.zygote_pid != first
        monkeypatch.setattr(model.sandbox, "_REPORT_TIMEOUT_S", 1.0)
        stuck = decoder.zygote_pid
        os.kill(stuck, signal.SIGSTOP)  # alive but answering nothing
        asked = time.monotonic()
        with pytest.raises(RuntimeError, match="zygote is gone or stuck"):
            decoder.open(one_face_video.path)
        # Killed after the 1 s it had to answer, not given the 5 s a zygote has to quit.
        assert time.monotonic() - asked < 4.0
        with pytest.raises(ProcessLookupError):
            os.kill(stuck, 0)
        assert len(_frames(decoder.open(one_face_video.path))[2]) > 0  # a fresh one again
    finally:
        decoder.close()


def test_the_zygote_sees_packages_on_the_workers_pythonpath(tmp_path, monkeypatch, one_face_video):
    # A worker whose packages were installed with `pip --target` finds them through PYTHONPATH;
    # its decoding child must find them too, or it cannot import av there.
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    decoder = DecoderSandbox()
    try:
        decoder.start()
        _frames(decoder.open(one_face_video.path))  # the zygote has run: its environ is its own
        with open(f"/proc/{decoder.zygote_pid}/environ", "rb") as listing:
            variables = dict(item.split(b"=", 1) for item in listing.read().split(b"\0") if item)
        paths = variables[b"PYTHONPATH"].decode().split(os.pathsep)
        assert paths == [str(REPO_ROOT), str(tmp_path)]
    finally:
        decoder.close()
