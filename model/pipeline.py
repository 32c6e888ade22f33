"""The one path from video to verdict: frames -> faces -> tensors -> fake probabilities -> label.

Training (face extraction, evaluation, batch inference) and the TorchServe handler call these
functions; nothing here knows about either.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from model.aggregation import AGGREGATIONS, aggregate
from model.faces import DetectorConfig, FaceBox, FaceDetector, crop_face, enlarged_square_box
from model.network import ModelSettings, fake_probabilities
from model.tensors import crops_to_batch
from model.video import (
    DEFAULT_LIMITS,
    SamplingConfig,
    VideoInfo,
    VideoLimits,
    VideoReader,
    VideoSource,
)

NO_FACE = "no_face"


@dataclass(frozen=True)
class PipelineConfig:
    """Everything about a run that is not in the checkpoint's settings."""

    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    aggregation: str = "mean"
    threshold: float = 0.5  # fake_probability >= threshold is labelled fake
    batch_size: int = 4  # face crops per forward pass (4: OpenVINO buffers ~190 MB at 299 px)

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

    info: VideoInfo
    frames: list[FrameFaces]
    timing_ms: dict[str, float]

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
) -> VideoFaces:
    """Decode the sampled frames, find the faces and cut their crops as the settings say;
    each full frame is dropped once its faces are cut, so memory holds crops only.
    `decode_threads`: FFmpeg's decoder threads (0: all cores); `limits`: what the video may
    cost (`VideoLimitError` past them)."""
    timing_ms = {"decode": 0.0, "detect": 0.0}
    frames: list[FrameFaces] = []
    with VideoReader(source, decode_threads, limits) as reader:
        width, height = reader.info.width, reader.info.height
        sampled = reader.sample(sampling)
        while True:
            started = time.perf_counter()
            frame = next(sampled, None)
            timing_ms["decode"] += _elapsed_ms(started)
            if frame is None:
                break
            started = time.perf_counter()
            faces = []
            for detection in detector.detect(frame.rgb):
                crop_box = enlarged_square_box(
                    detection.box, width, height, settings.face_crop_scale
                )
                crop = crop_face(frame.rgb, crop_box, settings.input_size)
                faces.append(Face(detection.box, crop_box, detection.score, crop))
            frames.append(FrameFaces(frame.index, frame.timestamp_s, faces))
            timing_ms["detect"] += _elapsed_ms(started)
        info = reader.info
    return VideoFaces(info, frames, timing_ms)


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


def analyze_video(
    source: VideoSource,
    network: nn.Module,
    settings: ModelSettings,
    config: PipelineConfig,
    detector: FaceDetector,
) -> VideoVerdict:
    """Video (path or bytes) to verdict through the whole pipeline."""
    faces = extract_faces(source, config.sampling, detector, settings)
    started = time.perf_counter()
    probabilities = classify_crops(network, settings, faces.face_crops, config.batch_size)
    classify_ms = _elapsed_ms(started)
    verdict = verdict_from_probabilities(faces, probabilities, config)
    verdict.timing_ms["classify"] = classify_ms
    return verdict


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
