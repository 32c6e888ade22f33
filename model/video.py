"""Decode a video from a file path or from bytes in memory with PyAV, and sample its frames."""

from __future__ import annotations

import bisect
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import av
import numpy as np

from model.container import ContainerFacts, facts_of
from model.errors import VideoInputError, VideoLimitError
from model.formats import describe, open_container

if TYPE_CHECKING:  # model.provenance imports this module
    from model.provenance import Provenance

VideoSource = str | os.PathLike | bytes | bytearray | memoryview

# More than this share of the frames the container declares missing means the file was cut short.
_TRUNCATION_TOLERANCE = 0.05
# Codecs whose keyframes (the demuxer's key flag) start a picture sequence no later frame looks
# behind, so decoding may restart at one; each is checked bit for bit in tests/test_video.py.
# Not MPEG-4 Part 2 (AVI's packed B-frames) nor codecs unseen there.
_RESTARTABLE_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "mjpeg"})
# Skip ahead to a keyframe only past at least this many packets: a restart empties the
# decoder's frame threads, which costs about as much as decoding a few frames.
MIN_PACKETS_SKIPPED = 4


@dataclass(frozen=True)
class VideoLimits:
    """What one video may cost: frame pixels from the codec parameters before any frame is
    decoded; declared duration and frame count right after the first frame (the only one
    decoded so far); decode time while decoding. None: no limit."""

    max_pixels: int | None = 4096 * 2304  # per frame: 4K UHD and DCI 4K pass, 8K does not
    max_duration_s: float | None = 600.0
    max_frame_count: int | None = 36_000  # 10 minutes at 60 fps
    max_decode_s: float | None = 60.0  # wall time inside the decoder for one video
    # Faces analysed per video (a crowd): later frames are left unread and the response says
    # so (model/pipeline.py score_video).
    max_faces: int | None = 400

    def __post_init__(self) -> None:
        for name in (
            "max_pixels",
            "max_duration_s",
            "max_frame_count",
            "max_decode_s",
            "max_faces",
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value}")


DEFAULT_LIMITS = VideoLimits()


@dataclass(frozen=True)
class SamplingConfig:
    """Which frames to analyse: every `interval`-th frame from frame 0, or `num_frames` evenly
    spaced ones; never more than `max_frames` (past the cap, evenly spaced over the whole video)
    and, by interval, never fewer than `min_frames` (up to `max_frames`; a short clip: that
    many evenly spaced, or every frame it has)."""

    interval: int = 20
    num_frames: int | None = None
    max_frames: int = 64
    # A clip too short for that many frames by interval gets that many evenly spaced, so a
    # 4 s clip's verdict rests on as many faces as a 10 s one's (15 at 30 fps). Protocol v2
    # served with it: paired rate +0.055 [+0.000, +0.113], AUC +0.011 (docs/training.md).
    min_frames: int = 15

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError(f"interval must be at least 1 frame, got {self.interval}")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {self.num_frames}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {self.max_frames}")
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be at least 1, got {self.min_frames}")

    @classmethod
    def exactly_every(cls, interval: int, **fields: Any) -> SamplingConfig:
        """Every `interval`-th frame and no minimum: a short clip gets only what that gives."""
        return cls(interval=interval, min_frames=1, **fields)

    def frame_indices(self, frame_count: int) -> list[int]:
        """Sorted frame indices to keep from a video of `frame_count` frames; never empty."""
        frame_count = max(frame_count, 1)
        if self.num_frames is None:
            every_nth = range(0, frame_count, self.interval)
            fewest = min(self.min_frames, self.max_frames)
            if fewest <= len(every_nth) <= self.max_frames:
                return list(every_nth)
            wanted = self.max_frames if len(every_nth) > self.max_frames else fewest
        else:
            wanted = min(self.num_frames, self.max_frames)
        return evenly_spaced(frame_count, wanted)


def evenly_spaced(frame_count: int, wanted: int) -> list[int]:
    """`wanted` distinct indices spread from the first to the last of `frame_count` frames."""
    wanted = max(1, min(wanted, frame_count))
    positions = np.linspace(0, frame_count - 1, wanted)
    return sorted({int(i) for i in np.floor(positions + 0.5)})


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the video stream; width and height as displayed."""

    width: int
    height: int
    fps: float
    duration_s: float
    frame_count: int
    codec: str
    rotation: int  # degrees counter-clockwise applied to decoded frames to display them upright
    container: str
    bit_rate: int | None = None  # the video stream's (else the container's) bits per second


@dataclass(frozen=True)
class DecodePlan:
    """The packets no sampled frame needs: `dropped` (by timestamp) lie between the packets one
    sampled frame needs and the keyframe the next one starts from; at each of `restarts` (a
    keyframe) the decoder first puts out what it holds, then starts afresh."""

    dropped: frozenset[int]
    restarts: frozenset[int]


NO_SKIPPING = DecodePlan(frozenset(), frozenset())


def decode_plan(
    packets: Sequence[tuple[int, bool]],
    wanted: Sequence[int],
    min_skipped: int = MIN_PACKETS_SKIPPED,
) -> DecodePlan:
    """`packets`: (timestamp, is keyframe) in decode order; `wanted`: the timestamps to put
    out. A wanted frame needs the packets from the last keyframe before it (in decode order,
    shown no later than it) up to its own; a run of at least `min_skipped` packets between
    such spans is dropped and decoding restarts at the next span's keyframe. A run after the
    last span is kept: the decoder needs packets after a frame to put out a reordered one."""
    position = {pts: at for at, (pts, _) in enumerate(packets)}
    keyframes = [at for at, (_, key) in enumerate(packets) if key]
    spans = []
    for pts in wanted:
        at = position.get(pts)
        if at is None:
            continue
        start = bisect.bisect_right(keyframes, at) - 1
        while start >= 0 and packets[keyframes[start]][0] > pts:  # a leading frame: look back
            start -= 1
        spans.append((keyframes[start] if start >= 0 else 0, at))
    dropped: set[int] = set()
    restarts: set[int] = set()
    needed_until = None
    for start, end in sorted(spans):
        if needed_until is not None and start - needed_until - 1 >= min_skipped:
            dropped.update(pts for pts, _ in packets[needed_until + 1 : start])
            restarts.add(packets[start][0])
        needed_until = end if needed_until is None else max(needed_until, end)
    return DecodePlan(frozenset(dropped), frozenset(restarts))


@dataclass(frozen=True)
class SampledFrame:
    """One decoded frame: `rgb` is (H, W, 3) uint8, upright, as the viewer would see it."""

    index: int
    timestamp_s: float
    rgb: np.ndarray


class VideoReader:
    """An open video. `info` is read on open; `sample()` then streams the chosen frames so a long
    video is never held in memory whole. Use as a context manager."""

    def __init__(
        self,
        source: VideoSource,
        threads: int = 0,
        limits: VideoLimits = DEFAULT_LIMITS,
        skip_unsampled: bool = True,
        keyframe_restarts: bool = True,
    ) -> None:
        """`threads`: FFmpeg decoder threads; 0 lets FFmpeg use every core (a server worker
        passes its share, so workers do not oversubscribe the cores). `limits`: refuse videos
        over them with `VideoLimitError`. `skip_unsampled`: decode only what the sampled
        frames need: the decoder skips the unsampled frames no other frame refers to
        (H.264/HEVC B-frames, ~a third of the decoding) and, with `keyframe_restarts`, the
        packets between one sampled frame and the keyframe the next one starts from (short
        keyframe intervals, sparse sampling; `decode_plan`). The sampled frames come out bit
        for bit the same."""
        self._source = validated_source(source)
        self._limits = limits
        self._skip_unsampled = skip_unsampled
        self._keyframe_restarts = keyframe_restarts
        self._decode_s = 0.0
        self.frames_decoded = 0  # frames the decoder put out, sampled or not
        self.packets_dropped = 0  # packets never given to the decoder (`decode_plan`)
        self._container = open_container(self._source)
        try:
            self._stream = _video_stream(self._container)
            self._check_header_limits()
            self._stream.thread_type = "AUTO"  # frame + slice threads in FFmpeg's decoder
            self._stream.codec_context.thread_count = threads
            self._packets = self._container.demux(self._stream)
            self._pending: deque[av.VideoFrame] = deque()  # decoded, not yet read
            self._wanted_pts: frozenset[int] | None = None  # None: decode every frame
            self._plan = NO_SKIPPING
            self._demuxed: list[tuple[int | None, bool]] | None = None  # see _packet_index
            self._first_frame = self._next_decoded_frame(index=0)
            self.info = self._read_info()
            self._check_info_limits()
            self.facts = facts_of(self._container)  # what the container says (provenance)
            self.provenance: Provenance | None = None  # the caller reads it (see OpenedVideo)
        except BaseException:
            self._container.close()
            raise
        self._sampled = False

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def sample(self, sampling: SamplingConfig) -> Iterator[SampledFrame]:
        """Yield the frames `sampling` asks for, in order; at least one. Single use."""
        if self._sampled:
            raise RuntimeError("VideoReader.sample() can run once; open the video again")
        self._sampled = True
        wanted = sampling.frame_indices(self.info.frame_count)
        wanted_set, last_wanted = set(wanted), wanted[-1]
        ranks = self._presentation_ranks(wanted_set)
        index, frame = 0, self._first_frame
        self._first_frame = None  # let the full-size frame go once it is converted
        while frame is not None:
            if index in wanted_set:
                yield SampledFrame(index, self._timestamp_s(frame, index), self._upright_rgb(frame))
            if index >= last_wanted:
                return
            frame = self._next_decoded_frame(index + 1)
            index = index + 1 if ranks is None or frame is None else ranks(frame, index + 1)
        self._check_not_truncated(decoded=index)

    def _presentation_ranks(self, wanted: set[int]) -> Callable[[av.VideoFrame, int], int] | None:
        """With `skip_unsampled`, a frame's index cannot be counted (skipped frames never come
        out of the decoder), so it is the frame's rank among the packets' presentation times,
        counted from the first frame decoded. Sets which packets the decoder may skip and
        returns that ranking; None (count the frames, skip nothing) when every frame is wanted
        or the timestamps cannot rank them (missing or repeated)."""
        if not self._skip_unsampled or len(wanted) >= self.info.frame_count:
            return None
        presentation = _presentation_times([pts for pts, _ in self._packet_index()])
        first = self._first_frame
        if presentation is None or first is None or first.pts not in presentation:
            return None
        offset = presentation.index(first.pts)
        self._wanted_pts = frozenset(
            presentation[offset + i] for i in wanted if offset + i < len(presentation)
        )
        if self._keyframe_restarts and self.info.codec in _RESTARTABLE_CODECS:
            self._plan = decode_plan(self._packet_index(), sorted(self._wanted_pts))

        def rank(frame: av.VideoFrame, counted: int) -> int:
            if frame.pts is None:
                return counted
            return bisect.bisect_left(presentation, frame.pts) - offset

        return rank

    def _next_decoded_frame(self, index: int) -> av.VideoFrame | None:
        started = time.perf_counter()
        try:
            while not self._pending:
                packet = next(self._packets, None)
                if packet is None:
                    break
                if self._wanted_pts is not None and packet.pts is not None:
                    if packet.pts in self._plan.dropped:
                        self.packets_dropped += 1
                        continue
                    if packet.pts in self._plan.restarts:
                        self._restart_decoder()
                    # NONREF: the decoder drops this packet's frame only if no frame refers to it.
                    wanted = packet.pts in self._wanted_pts
                    self._stream.codec_context.skip_frame = "DEFAULT" if wanted else "NONREF"
                self._pending.extend(packet.decode())
            frame = self._pending.popleft() if self._pending else None
            self.frames_decoded += frame is not None
        except av.FFmpegError as error:
            raise VideoInputError(
                f"video data is corrupt or truncated: reading frame {index} failed "
                f"({describe(error)})"
            ) from error
        self._decode_s += time.perf_counter() - started
        limit = self._limits.max_decode_s
        if limit is not None and self._decode_s > limit:
            raise VideoLimitError(
                f"decoding took longer than the server allows ({limit:g} s, stopped at frame "
                f"{index}); send a shorter or lower-resolution video",
                code="decode_timeout",
            )
        return frame

    def _restart_decoder(self) -> None:
        """Put out the frames the decoder holds (a sampled one may wait there for packets that
        were dropped), then reset it to start at a keyframe."""
        context = self._stream.codec_context
        self._pending.extend(context.decode(None))
        context.flush_buffers()

    def _check_header_limits(self) -> None:
        """Before any frame is decoded: the size the codec parameters declare."""
        context = self._stream.codec_context
        _check_pixels(context.width, context.height, self._limits)

    def _check_info_limits(self) -> None:
        info, limits = self.info, self._limits
        _check_pixels(info.width, info.height, limits)
        if limits.max_duration_s is not None and info.duration_s > limits.max_duration_s:
            raise VideoLimitError(
                f"video is {info.duration_s:.0f} s long; the server accepts up to "
                f"{limits.max_duration_s:g} s"
            )
        if limits.max_frame_count is not None and info.frame_count > limits.max_frame_count:
            raise VideoLimitError(
                f"video has {info.frame_count} frames; the server accepts up to "
                f"{limits.max_frame_count}"
            )

    def _read_info(self) -> VideoInfo:
        stream = self._stream
        first = self._first_frame
        if first is None:
            raise VideoInputError(
                f"no decodable frame in the {stream.codec_context.name} video stream "
                "(the file is empty, truncated or corrupt)"
            )
        rotation = _quarter_turns(first.rotation) * 90
        width, height = first.width, first.height
        if rotation % 180:
            width, height = height, width
        frame_count = stream.frames or len(self._packet_index())
        time_base = stream.time_base
        duration_s = 0.0
        if stream.duration and time_base:
            duration_s = float(stream.duration * time_base)
        elif self._container.duration:
            duration_s = self._container.duration / av.time_base
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else (frame_count / duration_s if duration_s else 0.0)
        if not duration_s and fps:
            duration_s = frame_count / fps
        return VideoInfo(
            width=width,
            height=height,
            fps=fps,
            duration_s=duration_s,
            frame_count=frame_count,
            codec=stream.codec_context.name,
            rotation=rotation,
            container=self._container.format.name,
            bit_rate=stream.bit_rate or self._container.bit_rate or None,
        )

    def _packet_index(self) -> list[tuple[int | None, bool]]:
        """Each video packet's (timestamp, is keyframe) in decode order, from one demux pass
        without decoding, made at most once per video: it gives the frame count where the
        container declares none (WebM, MKV), the presentation order that frame skipping ranks
        frames by, and the keyframes decoding may restart at."""
        if self._demuxed is None:
            self._demuxed = _video_packets(self._source)
        return self._demuxed

    def _timestamp_s(self, frame: av.VideoFrame, index: int) -> float:
        # A frame drained from the decoder (a restart) carries no time base: the stream's.
        time_base = frame.time_base or self._stream.time_base
        if frame.pts is None or time_base is None:
            return index / self.info.fps if self.info.fps else 0.0
        start = self._stream.start_time or 0
        return float((frame.pts - start) * time_base)

    def _upright_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        rgb = frame.to_ndarray(format="rgb24")
        turns = self.info.rotation // 90
        return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb

    def _check_not_truncated(self, decoded: int) -> None:
        declared = self._stream.frames
        if declared and decoded < declared * (1 - _TRUNCATION_TOLERANCE):
            raise VideoInputError(
                f"video is truncated: the container declares {declared} frames "
                f"but only {decoded} could be decoded"
            )


class OpenedVideo(Protocol):
    """A video open for sampling: VideoReader here, or a sandboxed decoder (model/sandbox.py)."""

    info: VideoInfo
    facts: ContainerFacts
    provenance: Provenance | None  # read by the sandbox's child; None: the caller reads it

    def sample(self, sampling: SamplingConfig) -> Iterator[SampledFrame]: ...
    def __enter__(self) -> OpenedVideo: ...
    def __exit__(self, *exc_info: object) -> None: ...


# (source, decoder threads, limits, skip unsampled frames) -> an open video.
OpenVideo = Callable[[VideoSource, int, VideoLimits, bool], OpenedVideo]


def read_sampled_frames(
    source: VideoSource, sampling: SamplingConfig
) -> tuple[VideoInfo, list[SampledFrame]]:
    """Open, sample and close in one call; holds all sampled frames, so keep `max_frames` small."""
    with VideoReader(source) as reader:
        return reader.info, list(reader.sample(sampling))


def _check_pixels(width: int, height: int, limits: VideoLimits) -> None:
    if limits.max_pixels is not None and width * height > limits.max_pixels:
        raise VideoLimitError(
            f"video frames are {width}x{height} ({width * height / 1e6:.1f} megapixels); the "
            f"server accepts up to {limits.max_pixels / 1e6:.1f} megapixels per frame"
        )


def validated_source(source: VideoSource) -> bytes | bytearray | memoryview | Path:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise VideoInputError("empty upload: got 0 bytes, expected a video file")
        return source
    path = Path(source)
    if not path.is_file():
        raise VideoInputError(f"no such video file: {path}")
    if path.stat().st_size == 0:
        raise VideoInputError(f"empty file: {path} has 0 bytes, expected a video")
    return path


def _video_stream(container: av.container.InputContainer) -> av.VideoStream:
    if container.streams.video:
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise VideoInputError(
                "the video stream's codec is unknown (its codec tag is damaged or not one "
                "FFmpeg decodes)"
            )
        return stream
    if container.streams.audio:
        raise VideoInputError("no video stream: the file holds only audio")
    raise VideoInputError("no video stream in the file")


def _presentation_times(stamps: list[int | None]) -> list[int] | None:
    """The video packets' timestamps in presentation order (a frame's rank in it is its index),
    or None when some packet has none or two share one, so they cannot rank the frames."""
    if None in stamps or len(set(stamps)) != len(stamps):
        return None
    return sorted(stamps)


def _video_packets(source: bytes | bytearray | memoryview | Path) -> list[tuple[int | None, bool]]:
    """Demux without decoding: (presentation timestamp, is keyframe) of each video packet that
    holds a frame the decoder will output (not empty, not marked to discard), in decode order."""
    with open_container(source) as container:
        return [
            (packet.pts, packet.is_keyframe)
            for packet in container.demux(video=0)
            if packet.size and not packet.is_discard
        ]


def _quarter_turns(rotation_degrees: float | None) -> int:
    return math.floor((rotation_degrees or 0) / 90 + 0.5) % 4
