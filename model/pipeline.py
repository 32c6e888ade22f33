"""The one path from video to verdict: frames -> faces -> tensors -> fake probabilities -> label.

Training (face extraction, evaluation, batch inference) and the TorchServe handler call these
functions; nothing here knows about either.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from model.aggregation import AGGREGATIONS, aggregate
from model.faces import DetectorConfig, FaceBox, FaceDetector, crop_face, enlarged_square_box
from model.network import ModelSettings, fake_probabilities
from model.prefetch import prefetch
from model.tensors import crops_to_batch
from model.video import (
    DEFAULT_LIMITS,
    SampledFrame,
    SamplingConfig,
    VideoInfo,
    VideoLimits,
    VideoReader,
    VideoSource,
)

NO_FACE = "no_face"

Item = TypeVar("Item")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything about a run that is not in the checkpoint's settings."""

    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    aggregation: str = "mean"
    threshold: float = 0.5  # fake_probability >= threshold is labelled fake
    batch_size: int = 4  # face crops per forward pass (4: OpenVINO buffers ~190 MB at 299 px)
    # Let the decoder skip unsampled frames no other frame refers to (same sampled pixels).
    skip_unsampled_frames: bool = True
    # Decode, detect and classify in three threads at once: the decoder works on the next
    # sampled frame while HOG searches this one and the network classifies the faces found so far.
    overlap_stages: bool = True

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"unknown aggregation {self.aggregation!r}; choose one of {sorted(AGGREGATIONS)}"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {self.threshold}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class Face:
    """One detected face: the detector's box, the enlarged square cut out, and that crop."""

    box: FaceBox
    crop_box: FaceBox
    detector_score: float
    crop: np.ndarray  # (S, S, 3) uint8 RGB, S = the model's input size


@dataclass(frozen=True)
class FrameFaces:
    frame_index: int
    timestamp_s: float
    faces: list[Face]


@dataclass
class VideoFaces:
    """The sampled frames of one video and the faces found in them (frames themselves dropped)."""

    info: VideoInfo | None = None  # set once the video is open
    frames: list[FrameFaces] = field(default_factory=list)
    timing_ms: dict[str, float] = field(default_factory=dict)

    @property
    def face_crops(self) -> list[np.ndarray]:
        return [face.crop for frame in self.frames for face in frame.faces]

    @property
    def face_count(self) -> int:
        return sum(len(frame.faces) for frame in self.frames)


@dataclass
class VideoVerdict:
    """The per-video outcome and the per-face scores behind it."""

    label: str  # "fake", "real" or "no_face"
    fake_probability: float | None  # None exactly when label is "no_face"
    threshold: float
    aggregation: str
    faces: VideoFaces
    face_probabilities: list[list[float]]  # per sampled frame, per face, in `faces` order
    timing_ms: dict[str, float]


def extract_faces(
    source: VideoSource,
    sampling: SamplingConfig,
    detector: FaceDetector,
    settings: ModelSettings,
    decode_threads: int = 0,
    limits: VideoLimits = DEFAULT_LIMITS,
    skip_unsampled_frames: bool = True,
) -> VideoFaces:
    """Decode the sampled frames, find the faces and cut their crops as the settings say;
    each full frame is dropped once its faces are cut, so memory holds crops only.
    `decode_threads`: FFmpeg's decoder threads (0: all cores); `limits`: what the video may
    cost (`VideoLimitError` past them); `skip_unsampled_frames`: see `PipelineConfig`."""
    faces = VideoFaces()
    for frame in iter_frame_faces(
        source, sampling, detector, settings, faces, decode_threads, limits, skip_unsampled_frames
    ):
        faces.frames.append(frame)
    return faces


def iter_frame_faces(
    source: VideoSource,
    sampling: SamplingConfig,
    detector: FaceDetector,
    settings: ModelSettings,
    faces: VideoFaces,
    decode_threads: int = 0,
    limits: VideoLimits = DEFAULT_LIMITS,
    skip_unsampled_frames: bool = True,
    decode_ahead: bool = False,
) -> Iterator[FrameFaces]:
    """`extract_faces` one sampled frame at a time; sets `faces.info` once the video is open
    and adds the decode and detect times to `faces.timing_ms` as it goes (the caller keeps the
    frames it wants). `decode_ahead`: decode in a thread of its own, one frame ahead."""
    timing_ms = faces.timing_ms
    timing_ms.update(decode=0.0, detect=0.0)
    with VideoReader(source, decode_threads, limits, skip_unsampled_frames) as reader:
        faces.info = reader.info
        width, height = reader.info.width, reader.info.height
        sampled = _timed(reader.sample(sampling), timing_ms, "decode")
        if decode_ahead:
            # The decoder stalled while HOG searched each frame: decoding the next one meanwhile
            # took the 1080p bench clip from 1.68-1.71 to 1.59-1.65 s (int8, in process, AMD
            # EPYC AVX2, 2 cores). One frame ahead: a 4K frame is 25 MB.
            sampled = prefetch(sampled, depth=1)
        with contextlib.closing(sampled):  # an early stop also stops the decoding thread
            yield from _detect_each(sampled, detector, settings, width, height, timing_ms)


def _detect_each(
    sampled: Iterable[SampledFrame],
    detector: FaceDetector,
    settings: ModelSettings,
    width: int,
    height: int,
    timing_ms: dict[str, float],
) -> Iterator[FrameFaces]:
    """Each frame's faces and crops; the full frame is let go once they are cut."""
    for frame in sampled:
        started = time.perf_counter()
        found = []
        for detection in detector.detect(frame.rgb):
            crop_box = enlarged_square_box(detection.box, width, height, settings.face_crop_scale)
            crop = crop_face(frame.rgb, crop_box, settings.input_size)
            found.append(Face(detection.box, crop_box, detection.score, crop))
        timing_ms["detect"] += _elapsed_ms(started)
        yield FrameFaces(frame.index, frame.timestamp_s, found)


def _timed(items: Iterator[Item], timing_ms: dict[str, float], stage: str) -> Iterator[Item]:
    """`items`, adding how long each one took to come to `timing_ms[stage]` (measured in
    whichever thread consumes them)."""
    while True:
        started = time.perf_counter()
        item = next(items, None)
        timing_ms[stage] += _elapsed_ms(started)
        if item is None:
            return
        yield item


@torch.inference_mode()
def classify_crops(
    network: nn.Module, settings: ModelSettings, face_crops: Sequence[np.ndarray], batch_size: int
) -> np.ndarray:
    """(N,) float32 fake probability per crop, `batch_size` crops per forward pass."""
    if len(face_crops) == 0:
        return np.zeros(0, dtype=np.float32)
    probabilities = []
    for start in range(0, len(face_crops), batch_size):
        batch = crops_to_batch(face_crops[start : start + batch_size], settings)
        probabilities.append(fake_probabilities(network, batch, settings).numpy())
    return np.concatenate(probabilities).astype(np.float32)


def verdict_from_probabilities(
    faces: VideoFaces, probabilities: np.ndarray, config: PipelineConfig
) -> VideoVerdict:
    """Aggregate per-face probabilities (in `faces.face_crops` order) into the video's label."""
    per_frame: list[list[float]] = []
    position = 0
    for frame in faces.frames:
        per_frame.append([float(p) for p in probabilities[position : position + len(frame.faces)]])
        position += len(frame.faces)
    if position != len(probabilities):
        raise ValueError(f"{len(probabilities)} probabilities for {position} faces")
    video_probability = aggregate(per_frame, config.aggregation)
    if video_probability is None:
        label = NO_FACE
    else:
        label = "fake" if video_probability >= config.threshold else "real"
    return VideoVerdict(
        label=label,
        fake_probability=video_probability,
        threshold=config.threshold,
        aggregation=config.aggregation,
        faces=faces,
        face_probabilities=per_frame,
        timing_ms=dict(faces.timing_ms),
    )


def score_video(
    source: VideoSource,
    classifier: nn.Module,
    settings: ModelSettings,
    config: PipelineConfig,
    detector: FaceDetector,
    decode_threads: int = 0,
    limits: VideoLimits = DEFAULT_LIMITS,
) -> tuple[VideoFaces, np.ndarray]:
    """The faces of the sampled frames and each face's fake probability (in `face_crops`
    order); `timing_ms` gets decode, detect, classify and total. With `config.overlap_stages`
    one thread decodes and another detects while this one classifies each micro-batch as soon
    as it is full, so the stage times overlap and add up to more than `total`, the wall time."""
    started = time.perf_counter()
    faces = VideoFaces()
    frames = iter_frame_faces(
        source,
        config.sampling,
        detector,
        settings,
        faces,
        decode_threads,
        limits,
        config.skip_unsampled_frames,
        decode_ahead=config.overlap_stages,
    )
    # A few frames ahead at most: the queue holds crops only, the producer waits when it is full.
    if config.overlap_stages:
        frames = prefetch(frames, depth=2 * config.batch_size)
    classified = _MicroBatches(classifier, settings, config.batch_size)
    with contextlib.closing(frames):  # on an error too: stop the producer, close the video
        for frame in frames:
            faces.frames.append(frame)
            classified.add(face.crop for face in frame.faces)
    probabilities = classified.finish()
    faces.timing_ms["classify"] = classified.elapsed_ms
    faces.timing_ms["total"] = _elapsed_ms(started)
    return faces, probabilities


class _MicroBatches:
    """Classifies crops `batch_size` at a time as they arrive; `finish` runs the rest."""

    def __init__(self, classifier: nn.Module, settings: ModelSettings, batch_size: int) -> None:
        self._classifier, self._settings = classifier, settings
        self._batch_size = batch_size
        self._waiting: list[np.ndarray] = []
        self._done: list[np.ndarray] = []
        self.elapsed_ms = 0.0

    def add(self, crops: Iterable[np.ndarray]) -> None:
        self._waiting.extend(crops)
        while len(self._waiting) >= self._batch_size:
            self._run(self._waiting[: self._batch_size])
            del self._waiting[: self._batch_size]

    def finish(self) -> np.ndarray:
        if self._waiting:
            self._run(self._waiting)
            self._waiting = []
        return np.concatenate(self._done) if self._done else np.zeros(0, dtype=np.float32)

    def _run(self, crops: list[np.ndarray]) -> None:
        started = time.perf_counter()
        self._done.append(classify_crops(self._classifier, self._settings, crops, self._batch_size))
        self.elapsed_ms += _elapsed_ms(started)


def analyze_video(
    source: VideoSource,
    network: nn.Module,
    settings: ModelSettings,
    config: PipelineConfig,
    detector: FaceDetector,
) -> VideoVerdict:
    """Video (path or bytes) to verdict through the whole pipeline."""
    faces, probabilities = score_video(source, network, settings, config, detector)
    return verdict_from_probabilities(faces, probabilities, config)


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
