"""Decoding and sampling on the real sample videos and on videos made here with PyAV."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.errors import VideoInputError, VideoLimitError
from model.video import (
    DecodePlan,
    SamplingConfig,
    VideoLimits,
    VideoReader,
    decode_plan,
    evenly_spaced,
    read_sampled_frames,
)
from support.video_factory import (
    blank_frames,
    encode_audio_only,
    encode_image,
    encode_video,
    grace_hopper_rgb,
)


def test_every_20th_frame_of_each_sample_video(sample_videos):
    for video in sample_videos:
        info, frames = read_sampled_frames(video.path, SamplingConfig.exactly_every(20))
        assert (info.width, info.height) == (video.width, video.height), video.name
        assert info.frame_count == video.frame_count, video.name
        assert info.fps == pytest.approx(video.fps, abs=0.01), video.name
        assert [f.index for f in frames] == list(range(0, video.frame_count, 20)), video.name
        for frame in frames:
            assert frame.rgb.shape == (video.height, video.width, 3)
            assert frame.rgb.dtype == np.uint8
            # Constant frame rate: the timestamp is the index over the rate, to a frame.
            assert frame.timestamp_s == pytest.approx(frame.index / video.fps, abs=1 / video.fps)


def test_evenly_spaced_frames_span_the_video(one_face_video):
    info, frames = read_sampled_frames(one_face_video.path, SamplingConfig(num_frames=5))
    indices = [f.index for f in frames]
    assert indices[0] == 0 and indices[-1] == info.frame_count - 1
    assert len(indices) == 5
    gaps = np.diff(indices)
    assert gaps.max() - gaps.min() <= 1


def test_cap_switches_to_evenly_spaced_frames_over_the_whole_video(one_face_video):
    _, frames = read_sampled_frames(
        one_face_video.path, SamplingConfig.exactly_every(5, max_frames=4)
    )
    indices = [f.index for f in frames]
    assert len(indices) == 4
    assert indices[-1] == one_face_video.frame_count - 1


def test_same_frames_from_path_and_from_bytes(one_face_video):
    sampling = SamplingConfig.exactly_every(20)
    info_path, from_path = read_sampled_frames(one_face_video.path, sampling)
    info_bytes, from_bytes = read_sampled_frames(one_face_video.path.read_bytes(), sampling)
    assert info_path == info_bytes
    assert [f.index for f in from_path] == [f.index for f in from_bytes]
    for a, b in zip(from_path, from_bytes, strict=True):
        assert a.timestamp_s == b.timestamp_s
        np.testing.assert_array_equal(a.rgb, b.rgb)


def test_bytearray_upload_is_accepted(one_face_video):
    # TorchServe hands request bodies over as bytearray.
    _, frames = read_sampled_frames(bytearray(one_face_video.path.read_bytes()), SamplingConfig())
    assert frames


def test_video_shorter_than_the_interval_gives_its_first_frame():
    data = encode_video(blank_frames(5))
    info, frames = read_sampled_frames(data, SamplingConfig.exactly_every(20))
    assert info.frame_count == 5
    assert [f.index for f in frames] == [0]


def test_single_frame_video():
    _, frames = read_sampled_frames(encode_video(blank_frames(1)), SamplingConfig(num_frames=8))
    assert [f.index for f in frames] == [0]


def test_rotation_metadata_turns_frames_upright():
    upright = grace_hopper_rgb()  # 600 high x 512 wide
    # Stored turned a quarter clockwise; the display matrix says turn 90 degrees back.
    stored = np.ascontiguousarray(np.rot90(upright, k=-1))
    info, frames = read_sampled_frames(encode_video([stored] * 3, rotation=90), SamplingConfig())
    assert info.rotation == 90
    assert (info.width, info.height) == (512, 600)
    assert frames[0].rgb.shape == (600, 512, 3)
    error = np.abs(frames[0].rgb.astype(int) - upright.astype(int)).mean()
    assert error < 8, f"decoded frame is not the upright picture (mean abs error {error:.1f})"


def test_variable_frame_rate_timestamps_follow_the_container():
    times = [0.0, 0.1, 0.15, 0.5, 0.55, 1.3]
    data = encode_video(blank_frames(len(times)), frame_times_s=times)
    _, frames = read_sampled_frames(data, SamplingConfig.exactly_every(1))
    assert [f.index for f in frames] == list(range(len(times)))
    assert [f.timestamp_s for f in frames] == pytest.approx(times, abs=1e-3)


def test_webm_without_a_declared_frame_count():
    data = encode_video(blank_frames(40), container="webm", codec="libvpx-vp9")
    info, frames = read_sampled_frames(data, SamplingConfig.exactly_every(10))
    assert info.frame_count == 40
    assert [f.index for f in frames] == [0, 10, 20, 30]


def test_sampling_runs_once_per_reader(one_face_video):
    with VideoReader(one_face_video.path) as reader:
        list(reader.sample(SamplingConfig()))
        with pytest.raises(RuntimeError, match="once"):
            list(reader.sample(SamplingConfig()))


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda: b"", "empty upload"),
        (lambda: bytes(1), "not a video file"),
        (lambda: np.random.default_rng(0).bytes(50_000), "not a video file"),
        (lambda: b"just some text, not a video\n" * 200, "not a video file"),
        (lambda: encode_image(grace_hopper_rgb(), ".png"), "looks like a PNG image"),
        (lambda: encode_image(grace_hopper_rgb(), ".jpg"), "looks like a JPEG image"),
        (lambda: encode_audio_only(), "only audio"),
        (lambda: encode_video([grace_hopper_rgb()] * 30)[:20_000], "MP4/MOV file is truncated"),
        (
            lambda: _truncated(encode_video([grace_hopper_rgb()] * 30, faststart=True), 0.5),
            "corrupt or truncated",
        ),
    ],
    ids=[
        "empty",
        "one-byte",
        "random-bytes",
        "text",
        "png",
        "jpeg",
        "audio-only",
        "truncated-moov-at-end",
        "truncated-faststart",
    ],
)
def test_bad_input_raises_video_input_error(make_input, message):
    with pytest.raises(VideoInputError, match=message):
        read_sampled_frames(make_input(), SamplingConfig())


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(VideoInputError, match="no such video file"):
        read_sampled_frames(tmp_path / "absent.mp4", SamplingConfig())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoInputError, match="0 bytes"):
        read_sampled_frames(empty, SamplingConfig())


def test_evenly_spaced_indices_are_distinct_and_bounded():
    assert evenly_spaced(10, 10) == list(range(10))
    assert evenly_spaced(3, 10) == [0, 1, 2]
    assert evenly_spaced(101, 5) == [0, 25, 50, 75, 100]
    assert evenly_spaced(1, 4) == [0]


def test_a_short_clip_gets_the_minimum_evenly_spaced_and_a_long_one_every_20th():
    served = SamplingConfig()  # every 20th frame, at least 15, at most 64
    assert served.frame_indices(100) == evenly_spaced(100, 15)
    assert served.frame_indices(300) == list(range(0, 300, 20))  # 10 s at 30 fps: 15 anyway
    assert served.frame_indices(10) == list(range(10))  # fewer frames than the minimum: all
    assert len(served.frame_indices(1800)) == 64  # the cap
    assert SamplingConfig(max_frames=8).frame_indices(100) == evenly_spaced(100, 8)
    assert SamplingConfig(min_frames=1).frame_indices(100) == [0, 20, 40, 60, 80]


@pytest.mark.parametrize(
    "kwargs", [{"interval": 0}, {"num_frames": 0}, {"max_frames": 0}, {"min_frames": 0}], ids=str
)
def test_sampling_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        SamplingConfig(**kwargs)


def _truncated(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def test_limits_refuse_before_decoding_and_while_decoding():
    small = encode_video(blank_frames(30, 64, 48))
    with pytest.raises(VideoLimitError, match="64x48") as error:
        VideoReader(small, limits=VideoLimits(max_pixels=64 * 47))
    assert error.value.code == "video_too_large"
    with pytest.raises(VideoLimitError, match="30 frames; the server accepts up to 29"):
        VideoReader(small, limits=VideoLimits(max_frame_count=29))
    long = encode_video(blank_frames(2), frame_times_s=[0.0, 3600.0])
    with pytest.raises(VideoLimitError, match="3600 s long"):
        VideoReader(long)  # the default limits: 600 s
    with pytest.raises(VideoLimitError, match="decoding took longer") as error:
        VideoReader(small, limits=VideoLimits(max_decode_s=1e-9))  # the first frame is too slow
    assert error.value.code == "decode_timeout"


def test_within_limits_reads_normally():
    small = encode_video(blank_frames(30, 64, 48))
    exact = VideoLimits(max_pixels=64 * 48, max_duration_s=1.3, max_frame_count=30)
    with VideoReader(small, limits=exact) as reader:
        assert len(list(reader.sample(SamplingConfig.exactly_every(1)))) == 30


@given(
    frame_count=st.integers(0, 100_000),
    interval=st.integers(1, 1000),
    num_frames=st.none() | st.integers(1, 500),
    max_frames=st.integers(1, 200),
    min_frames=st.integers(1, 200),
)
def test_sampling_never_exceeds_the_cap_and_stays_in_the_video(
    frame_count, interval, num_frames, max_frames, min_frames
):
    sampling = SamplingConfig(interval, num_frames, max_frames, min_frames)
    indices = sampling.frame_indices(frame_count)
    assert 1 <= len(indices) <= max_frames
    if num_frames is not None:
        assert len(indices) <= num_frames
    else:  # every interval-th frame, or as many as the minimum asks where the clip has them
        fewest = min(min_frames, max_frames, max(frame_count, 1))
        assert len(indices) >= fewest
        if fewest <= len(range(0, frame_count, interval)) <= max_frames:
            assert indices == list(range(0, frame_count, interval))
    assert indices == sorted(set(indices))
    assert indices[0] == 0 and indices[-1] <= max(frame_count, 1) - 1


def _read_all(
    source, sampling: SamplingConfig, skip: bool, restarts: bool = True
) -> tuple[list, int]:
    with VideoReader(source, threads=2, skip_unsampled=skip, keyframe_restarts=restarts) as reader:
        frames = list(reader.sample(sampling))
        return frames, reader.frames_decoded


def _assert_same_frames(expected, got, what: str) -> None:
    assert [f.index for f in got] == [f.index for f in expected], what
    for a, b in zip(expected, got, strict=True):
        assert a.timestamp_s == b.timestamp_s, what
        np.testing.assert_array_equal(a.rgb, b.rgb, err_msg=what)


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingConfig(),
        SamplingConfig(num_frames=7),
        pytest.param(  # ~10 s
            SamplingConfig.exactly_every(3), marks=pytest.mark.integration
        ),
    ],
    ids=["every-20th", "7-frames", "every-3rd"],
)
def test_skipping_unsampled_frames_gives_the_same_frames(sample_videos, sampling):
    """Skipping non-reference frames nobody asked for must not move or change a sampled one."""
    for video in sample_videos:
        expected, _ = _read_all(video.path, sampling, skip=False)
        got, _ = _read_all(video.path, sampling, skip=True)
        _assert_same_frames(expected, got, video.name)


def test_skipping_decodes_fewer_frames_of_a_video_with_b_frames():
    frames = [np.roll(grace_hopper_rgb(), shift, axis=1) for shift in range(0, 120, 2)]
    data = encode_video(frames)  # libx264's defaults: B-frames, some not referenced
    sampling = SamplingConfig.exactly_every(10)
    expected, all_decoded = _read_all(data, sampling, skip=False)
    got, decoded = _read_all(data, sampling, skip=True)
    _assert_same_frames(expected, got, "x264 clip")
    assert [f.index for f in got] == [0, 10, 20, 30, 40, 50]
    assert all_decoded == 51  # stops after the last sampled frame
    assert decoded < 0.8 * all_decoded


@pytest.mark.parametrize(
    "make_video",
    [
        lambda: encode_video(blank_frames(6), frame_times_s=[0.0, 0.1, 0.15, 0.5, 0.55, 1.3]),
        lambda: encode_video(blank_frames(40), container="webm", codec="libvpx-vp9"),
        lambda: encode_video([np.ascontiguousarray(np.rot90(grace_hopper_rgb()))] * 9, rotation=90),
    ],
    ids=["variable-frame-rate", "webm-vp9", "rotated"],
)
def test_skipping_keeps_frames_of_unusual_videos(make_video):
    data = make_video()
    for sampling in (SamplingConfig.exactly_every(2), SamplingConfig(num_frames=3)):
        expected, _ = _read_all(data, sampling, skip=False)
        got, _ = _read_all(data, sampling, skip=True)
        _assert_same_frames(expected, got, str(sampling))


def test_decode_plan_drops_what_lies_between_a_sampled_frame_and_the_next_keyframe():
    # Keyframes every 6 packets, no reordering (timestamp = decode position).
    packets = [(at, at % 6 == 0) for at in range(24)]
    plan = decode_plan(packets, wanted=[0, 14], min_skipped=4)
    # Frame 0 needs packet 0; frame 14 needs 12-14: packets 1-11 are never decoded.
    assert plan == DecodePlan(dropped=frozenset(range(1, 12)), restarts=frozenset({12}))
    # A gap shorter than min_skipped is decoded through (a restart costs a few frames).
    assert decode_plan(packets, wanted=[4, 8], min_skipped=4).dropped == frozenset()
    # Nothing is dropped after the last sampled frame's packets (the decoder may need them to
    # put out a reordered frame), nor before the first.
    tail = decode_plan(packets, wanted=[2], min_skipped=1)
    assert tail == DecodePlan(frozenset(), frozenset())


def test_decode_plan_starts_a_leading_frame_at_the_keyframe_before_its_own():
    # Open GOP: packet 6 is a keyframe shown at 7; packet 7 is shown at 6 (a leading frame,
    # decoded after the keyframe, may refer to frames before it).
    shown = [0, 1, 2, 3, 4, 5, 7, 6, 8, 9, 10, 11]
    packets = [(pts, at in (0, 6)) for at, pts in enumerate(shown)]
    assert decode_plan(packets, wanted=[0, 6], min_skipped=1).dropped == frozenset()
    assert decode_plan(packets, wanted=[0, 8], min_skipped=1).restarts == frozenset({7})


def _moving_picture(count: int) -> list[np.ndarray]:
    """`count` frames of a small picture panning sideways: every codec predicts them."""
    picture = grace_hopper_rgb()[100:196, 100:228]  # 128 x 96
    return [np.roll(picture, shift, axis=1) for shift in range(0, 2 * count, 2)]


VPX_FAST = {"g": "10", "deadline": "realtime"}
# 60 frames at about 25 fps, each up to a third of a frame early or late (variable frame rate).
WANDERING_TIMES = [(i + 0.3 * np.sin(i * 1.7)) / 25 if i else 0.0 for i in range(60)]


@pytest.mark.parametrize(
    "encoding",
    [
        {"codec_options": {"g": "12"}},  # short keyframe interval with B-frames (phones: ~1 s)
        {"codec_options": {"g": "12", "x264-params": "open-gop=1"}},
        # As phones write: no B-frames, variable frame rate (a frame put out at a restart
        # must keep its own time).
        {"codec_options": {"g": "12", "bf": "0"}, "frame_times_s": WANDERING_TIMES},
        {"container": "matroska", "codec_options": {"g": "10"}},
        {"codec": "libx265", "codec_options": {"g": "10", "x265-params": "log-level=error"}},
        {"container": "webm", "codec": "libvpx-vp9", "codec_options": VPX_FAST},
        {"container": "webm", "codec": "libvpx", "codec_options": VPX_FAST},
        {"container": "avi", "codec": "mjpeg"},  # every frame a keyframe
    ],
    ids=["h264", "h264-open-gop", "h264-vfr", "h264-mkv", "hevc", "vp9", "vp8", "mjpeg-avi"],
)
def test_keyframe_restarts_give_the_same_frames_and_decode_fewer(encoding):
    data = encode_video(_moving_picture(60), **encoding)
    for sampling in (SamplingConfig.exactly_every(20), SamplingConfig(num_frames=4)):
        expected, all_decoded = _read_all(data, sampling, skip=False)
        through, decoded_through = _read_all(data, sampling, skip=True, restarts=False)
        got, decoded = _read_all(data, sampling, skip=True)
        _assert_same_frames(expected, through, f"{encoding} {sampling} without restarts")
        _assert_same_frames(expected, got, f"{encoding} {sampling}")
        assert decoded < min(decoded_through, all_decoded), sampling
