"""The one path from video to verdict: frames -> faces -> tensors -> fake probabilities -> label.

Training (face extraction, evaluation, batch inference) and serving (`model.service`) call
these functions; nothing here knows about either. A `Face` is one record from detection to
JSON: found, cropped, scored in place, linked to a person (model/people.py), judged
(model/verdict.py), written (model/report.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from model.container import ContainerFacts
from model.faces import HOG_SEARCH, FaceBox, FaceDetector, crop_face, enlarged_square_box
from model.network import ModelSettings, fake_probabilities
from model.prefetch import prefetch
from model.provenance import Provenance
from model.tensors import crops_to_batch
from model.video import (
    DEFAULT_LIMITS,
    OpenVideo,
    SampledFrame,
    SamplingConfig,
    VideoInfo,
    VideoLimits,
    VideoReader,
    VideoSource,
)

Item = TypeVar("Item")


@dataclass(eq=False)
class Face:
    """One face: where it was found, the enlarged square cut out, that crop, and its fake
    probability once the network has scored it."""

    frame_index: int
    timestamp_s: float
    box: FaceBox
    crop_box: FaceBox
    detector_score: float
    crop: np.ndarray  # (S, S, 3) uint8 RGB, S = the model's input size
    fake_probability: float | None = None
    person_id: int | None = None  # set when linked to a person (model/people.py)
    descriptor: np.ndarray | None = (
        None  # (128,) dlib face descriptor, only where tracking needed it
    )
    found_by: str = HOG_SEARCH  # the search that found it: the fast pass or the second look

    def as_json(self) -> dict[str, Any]:
        """The face's fields in the response schema (and in training's faces.json)."""
        entry: dict[str, Any] = {
            "box": self.box.as_list(),
            "crop_box": self.crop_box.as_list(),
            "detector_score": round(float(self.detector_score), 4),
            "found_by": self.found_by,
        }
        if self.fake_probability is not None:
            entry["fake_probability"] = round(self.fake_probability, 6)
        if self.person_id is not None:
            entry["person_id"] = self.person_id
        return entry


@dataclass(frozen=True)
class FrameFaces:
    frame_index: int
    timestamp_s: float
    faces: list[Face]


@dataclass
class VideoFaces:
    """The sampled frames of one video and the faces found in them (frames themselves dropped)."""

    info: VideoInfo | None = None  # set once the video is open
    container: ContainerFacts | None = None  # what the container says of itself, likewise
    # Content Credentials and container facts, where the decoder read them (the sandbox).
    provenance: Provenance | None = None
    frames: list[FrameFaces] = field(default_factory=list)
    timing_ms: dict[str, float] = field(default_factory=dict)
    truncated: bool = False  # stopped at the limit on faces per video, later frames unread

    @property
    def faces(self) -> list[Face]:
        return [face for frame in self.frames for face in frame.faces]

    @property
    def face_count(self) -> int:
        return sum(len(frame.faces) for frame in self.frames)

    def frame_probabilities(self) -> list[list[float | None]]:
        """Each sampled frame's faces' fake probabilities (None where not yet scored): what
        the face rules of model/aggregation.py take."""
        return [[face.fake_probability for face in frame.faces] for frame in self.frames]


def extract_faces(
    source: VideoSource,
    sampling: SamplingConfig,
    detector: FaceDetector,
    settings: ModelSettings,
    limits: VideoLimits = DEFAULT_LIMITS,
) -> VideoFaces:
    """Decode the sampled frames, find the faces and cut their crops as the settings say;
    each full frame is dropped once its faces are cut, so memory holds crops only."""
    faces = VideoFaces()
    faces.frames.extend(iter_frame_faces(source, sampling, detector, settings, faces, limits))
    return faces


def iter_frame_faces(
    source: VideoSource,
    sampling: SamplingConfig,
    detector: FaceDetector,
    settings: ModelSettings,
    faces: VideoFaces,
    limits: VideoLimits = DEFAULT_LIMITS,
    skip_unsampled_frames: bool = True,
    decode_ahead: bool = False,
    decode_threads: int = 0,
    open_video: OpenVideo = VideoReader,
) -> Iterator[FrameFaces]:
    """`extract_faces` one sampled frame at a time; sets `faces.info` once the video is open
    and adds the decode and detect times to `faces.timing_ms` as it goes (the caller keeps the
    frames it wants). `limits`: what the video may cost (`VideoLimitError` past them);
    `decode_ahead`: decode in a thread of its own, one frame ahead (a 4K frame is 25 MB);
    `decode_threads`: FFmpeg's decoder threads (0: all cores); `open_video`: VideoReader, or
    a sandbox's `open` (model/sandbox.py) that decodes in a confined child process."""
    timing_ms = faces.timing_ms
    timing_ms.update(decode=0.0, detect=0.0)
    with open_video(source, decode_threads, limits, skip_unsampled_frames) as reader:
        faces.info, faces.container = reader.info, reader.facts
        faces.provenance = reader.provenance
        width, height = reader.info.width, reader.info.height
        sampled = _timed(reader.sample(sampling), timing_ms, "decode")
        if decode_ahead:  # the decoder would otherwise wait while HOG searches each frame
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
    for frame_number, frame in enumerate(sampled):
        started = time.perf_counter()
        found = []
        for detection in detector.detect(frame.rgb, frame_number):
            crop_box = enlarged_square_box(detection.box, width, height, settings.face_crop_scale)
            crop = crop_face(frame.rgb, crop_box, settings.input_size)
            found.append(
                Face(
                    frame.index,
                    frame.timestamp_s,
                    detection.box,
                    crop_box,
                    detection.score,
                    crop,
                    found_by=detection.found_by,
                )
            )
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


def score_video(
    source: VideoSource,
    classifier: nn.Module,
    settings: ModelSettings,
    sampling: SamplingConfig,
    detector: FaceDetector,
    crops_per_batch: int,
    limits: VideoLimits = DEFAULT_LIMITS,
    skip_unsampled_frames: bool = True,
    max_faces: int | None = None,
    overlap_stages: bool = True,
    decode_threads: int = 0,
    open_video: OpenVideo = VideoReader,
) -> VideoFaces:
    """The faces of the sampled frames, each with its fake probability; `timing_ms` gets
    decode, detect, classify and total. With `overlap_stages` one thread decodes and another
    detects while this one classifies each micro-batch as soon as it is full, so the stage
    times overlap and add up to more than `total`, the wall time. Past `max_faces` faces the
    rest of the video is left unread and `truncated` is set."""
    started = time.perf_counter()
    faces = VideoFaces()
    frames = iter_frame_faces(
        source,
        sampling,
        detector,
        settings,
        faces,
        limits,
        skip_unsampled_frames,
        decode_ahead=overlap_stages,
        decode_threads=decode_threads,
        open_video=open_video,
    )
    # A few frames ahead at most: the queue holds crops only, the producer waits when it is full.
    if overlap_stages:
        frames = prefetch(frames, depth=2 * crops_per_batch)
    classified = _MicroBatches(classifier, settings, crops_per_batch)
    with contextlib.closing(frames):  # on an error too: stop the producer, close the video
        for frame in frames:
            if max_faces is not None and faces.face_count + len(frame.faces) > max_faces:
                faces.truncated = True
                break
            faces.frames.append(frame)
            classified.add(frame.faces)
    classified.finish()
    faces.timing_ms["classify"] = classified.elapsed_ms
    faces.timing_ms["total"] = _elapsed_ms(started)
    return faces


class _MicroBatches:
    """Scores faces `batch_size` at a time as they arrive; `finish` scores the rest."""

    def __init__(self, classifier: nn.Module, settings: ModelSettings, batch_size: int) -> None:
        self._classifier, self._settings = classifier, settings
        self._batch_size = batch_size
        self._waiting: list[Face] = []
        self.elapsed_ms = 0.0

    def add(self, faces: Iterable[Face]) -> None:
        self._waiting.extend(faces)
        while len(self._waiting) >= self._batch_size:
            self._run(self._waiting[: self._batch_size])
            del self._waiting[: self._batch_size]

    def finish(self) -> None:
        if self._waiting:
            self._run(self._waiting)
            self._waiting = []

    def _run(self, faces: list[Face]) -> None:
        started = time.perf_counter()
        crops = [face.crop for face in faces]
        probabilities = classify_crops(self._classifier, self._settings, crops, self._batch_size)
        for face, probability in zip(faces, probabilities, strict=True):
            face.fake_probability = float(probability)
        self.elapsed_ms += _elapsed_ms(started)


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
