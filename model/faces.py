"""Find faces in a frame and cut the square, enlarged crops the network classifies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import dlib
import numpy as np


@dataclass(frozen=True)
class FaceBox:
    """Pixel box `[x0, x1) x [y0, y1)` in the upright source frame."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]


def iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes, in [0, 1]."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / (a.width * a.height + b.width * b.height - inter)


# The name of the fast pass, what a face it found says in `found_by`.
HOG_SEARCH = "dlib_hog"


@dataclass(frozen=True)
class Detection:
    """A face the detector found: its box in source pixels, which search found it, and that
    search's confidence (dlib HOG's SVM margin, or MTCNN's face probability in [0, 1])."""

    box: FaceBox
    score: float
    found_by: str = HOG_SEARCH


class FaceDetector(Protocol):
    """Anything that finds faces in an upright (H, W, 3) uint8 RGB frame, best first.
    `frame_number` counts a video's sampled frames from 0 (a lone image is frame 0)."""

    name: str
    searches: str  # what the response's model.detector says: "dlib_hog+mtcnn"

    def detect(self, rgb: np.ndarray, frame_number: int = 0) -> list[Detection]: ...


RETRY_WITH = ("mtcnn", "hog", None)


@dataclass(frozen=True)
class DetectorConfig:
    """Which detector to build and how hard it looks."""

    kind: str = HOG_SEARCH
    detect_width: int = 640  # frames wider than this are searched on a downscaled copy
    # The fast pass: dlib pyramid upsamplings, faces from ~80 px of the searched copy at 0,
    # ~40 px at 1 (4x slower).
    upsample: int = 0
    # A second search of the same copy finds the faces the fast pass misses: "mtcnn" (a small
    # CNN cascade, model/mtcnn.py: recall set 90% -> 98%), "hog" (HOG again at
    # `retry_upsample`), or None. It runs where the fast pass found nothing, where its smallest
    # face is narrower than `retry_below_px` (smaller ones it cannot see are likely), and on
    # every `retry_every`-th sampled frame from the first (faces HOG misses by pose: a person
    # turned away beside five frontal ones is found there and tracking links the frames). Faces
    # the fast pass found keep its boxes (their crops and scores do not move); it adds faces.
    retry_with: str | None = "mtcnn"
    retry_upsample: int = 1
    retry_below_px: int | None = 100
    retry_every: int | None = 8
    retry_min_face_px: int = 40  # MTCNN's smallest face, in the searched copy's pixels
    # MTCNN's faces kept from this probability: the people of the group clips are found at
    # 0.97-1.0 in every frame; at 0.87-0.92 it made one-frame tracks of edges and hands.
    retry_min_probability: float = 0.95
    min_score: float = 0.0  # dlib's adjust_threshold: raise to drop weak detections
    # Per frame, highest scores kept: a crowd's faces all count (10 lost 8 of a mosaic's 18,
    # benchmarks/faces.py); the per-video `limits.max_faces` bounds the work.
    max_faces: int = 40
    grey: bool = True  # search a grey copy (FF++'s way, 1.5x faster); False: dlib's RGB HOG

    def __post_init__(self) -> None:
        if self.kind not in DETECTORS:
            raise ValueError(f"unknown detector {self.kind!r}; choose one of {sorted(DETECTORS)}")
        if self.detect_width < 32:
            raise ValueError(f"detect_width must be at least 32 px, got {self.detect_width}")
        for name in ("upsample", "retry_upsample"):
            if not 0 <= getattr(self, name) <= 2:
                raise ValueError(f"{name} must be 0, 1 or 2, got {getattr(self, name)}")
        if self.retry_with not in RETRY_WITH:
            raise ValueError(f"retry_with must be one of {RETRY_WITH}, got {self.retry_with!r}")
        for name in ("retry_below_px", "retry_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive or None, got {value}")
        if self.retry_min_face_px < 12:
            raise ValueError(f"retry_min_face_px must be at least 12, got {self.retry_min_face_px}")
        if not 0.0 <= self.retry_min_probability < 1.0:
            raise ValueError(
                f"retry_min_probability must be in [0, 1), got {self.retry_min_probability}"
            )
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {self.max_faces}")


class DlibHogDetector:
    """dlib's frontal-face HOG + linear SVM detector, run on a copy at most `detect_width` wide."""

    name = HOG_SEARCH

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self._detector = dlib.get_frontal_face_detector()
        self._mtcnn = None
        self.searches = self.name
        self.second_looks = 0  # frames the second look has searched (what it costs)
        if config.retry_with == "mtcnn":
            from model.mtcnn import MtcnnSearch  # torch-backed: only built where it is used

            self._mtcnn = MtcnnSearch(config.retry_min_face_px, config.retry_min_probability)
            self.searches = f"{self.name}+mtcnn"

    def detect(self, rgb: np.ndarray, frame_number: int = 0) -> list[Detection]:
        height, width = rgb.shape[:2]
        copy, scale = searched_copy(rgb, self.config.detect_width)
        # Grey, as FaceForensics++ detected: 1.5x faster than dlib's per-channel gradients on
        # RGB, and the same faces in every sampled frame of the sample videos.
        searched = cv2.cvtColor(copy, cv2.COLOR_RGB2GRAY) if self.config.grey else copy
        found = self._search(searched, self.config.upsample)
        found.sort(key=lambda hit: hit[1], reverse=True)
        added: list[tuple[FaceBox, float]] = []
        if self._worth_retrying(found, frame_number):
            self.second_looks += 1
            again = (
                self._mtcnn(copy)
                if self._mtcnn is not None
                else self._search(searched, self.config.retry_upsample)
            )
            added = sorted(
                ((box, score) for box, score in again if all(iou(box, b) < 0.3 for b, _ in found)),
                key=lambda hit: hit[1],
                reverse=True,
            )
        # The fast pass's faces first, then the second look's: their scores are not on one scale.
        second = self.config.retry_with if self._mtcnn is not None else self.name
        detections = [
            Detection(_to_source_box(box, scale, width, height), score, found_by)
            for hits, found_by in ((found, self.name), (added, second))
            for box, score in hits
        ]
        detections = [d for d in detections if d.box.width > 0 and d.box.height > 0]
        return detections[: self.config.max_faces]

    def _search(self, searched: np.ndarray, upsample: int) -> list[tuple[FaceBox, float]]:
        """Boxes in the searched copy's pixels (dlib's inclusive corners made exclusive; they
        may reach past the copy's edge) and their scores."""
        rects, scores, _ = self._detector.run(searched, upsample, self.config.min_score)
        return [
            (FaceBox(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1), float(score))
            for rect, score in zip(rects, scores, strict=True)
        ]

    def _worth_retrying(self, found: list[tuple[FaceBox, float]], frame_number: int) -> bool:
        config = self.config
        if config.retry_with is None or (
            config.retry_with == "hog" and config.retry_upsample == config.upsample
        ):
            return False
        if not found or (config.retry_every is not None and frame_number % config.retry_every == 0):
            return True
        return (
            config.retry_below_px is not None
            and min(b.width for b, _ in found) < config.retry_below_px
        )


def searched_copy(rgb: np.ndarray, detect_width: int) -> tuple[np.ndarray, float]:
    """The frame as the detector searches it, at most `detect_width` wide, and its scale."""
    height, width = rgb.shape[:2]
    scale = min(1.0, detect_width / width)
    if scale == 1.0:
        return rgb, scale
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


DETECTORS: dict[str, Callable[[DetectorConfig], FaceDetector]] = {HOG_SEARCH: DlibHogDetector}


def make_detector(config: DetectorConfig) -> FaceDetector:
    """Build the detector `config.kind` names; new detectors register in `DETECTORS`."""
    return DETECTORS[config.kind](config)


def _to_source_box(box: FaceBox, scale: float, width: int, height: int) -> FaceBox:
    """A box of the searched copy in source pixels, clipped to the frame."""
    x0, y0, x1, y1 = (round(v / scale) for v in box.as_list())
    return FaceBox(max(x0, 0), max(y0, 0), min(x1, width), min(y1, height))


def enlarged_square_box(box: FaceBox, frame_width: int, frame_height: int, scale: float) -> FaceBox:
    """Square of side `scale` x max(w, h) centred on `box`, kept inside the frame.

    Follows FaceForensics++ `get_boundingbox` (scale 1.3) so that its released checkpoints see
    the crops they were trained on: the corner is clamped to the frame, then the side shrinks
    to fit, so the box stays square and may lose centring at the frame edge.
    """
    side = int(max(box.width, box.height) * scale)
    centre_x, centre_y = (box.x0 + box.x1) // 2, (box.y0 + box.y1) // 2
    x0 = max(centre_x - side // 2, 0)
    y0 = max(centre_y - side // 2, 0)
    side = max(1, min(side, frame_width - x0, frame_height - y0))
    return FaceBox(x0, y0, x0 + side, y0 + side)


def box_in_crop(box: FaceBox, crop_box: FaceBox, crop_size: int) -> FaceBox:
    """Where the detector's `box` lies in the crop cut at `crop_box` and resized to `crop_size`."""
    scale = crop_size / crop_box.width
    return FaceBox(
        round((box.x0 - crop_box.x0) * scale),
        round((box.y0 - crop_box.y0) * scale),
        round((box.x1 - crop_box.x0) * scale),
        round((box.y1 - crop_box.y0) * scale),
    )


def crop_face(rgb: np.ndarray, crop_box: FaceBox, size: int) -> np.ndarray:
    """Cut `crop_box` out of the frame and resize it to (size, size, 3) uint8."""
    return resize_square(rgb[crop_box.y0 : crop_box.y1, crop_box.x0 : crop_box.x1], size)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to (size, size): area averaging to shrink (no aliasing), bilinear to grow."""
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return np.ascontiguousarray(image)
    shrinking = height > size or width > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)
