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


@dataclass(frozen=True)
class Detection:
    """A face the detector found: its box in source pixels and the detector's confidence."""

    box: FaceBox
    score: float


class FaceDetector(Protocol):
    """Anything that finds faces in an upright (H, W, 3) uint8 RGB frame, best first."""

    name: str

    def detect(self, rgb: np.ndarray) -> list[Detection]: ...


@dataclass(frozen=True)
class DetectorConfig:
    """Which detector to build and how hard it looks."""

    kind: str = "dlib_hog"
    detect_width: int = 640  # frames wider than this are searched on a downscaled copy
    # dlib pyramid upsamplings: faces from ~80 px of the searched copy at 0, ~40 px at 1 (4x
    # slower). A frame where `upsample` finds nothing is searched again at `retry_upsample`
    # (None: never), so large faces cost the fast pass and small ones are still found when
    # they are the only faces in the frame.
    upsample: int = 0
    retry_upsample: int | None = 1
    # Also search again when the smallest face found is narrower than this in the searched copy
    # (None: only when nothing was found): where one face is that small, smaller ones the fast
    # pass cannot see are likely (recall 84% -> 90% on the recall set; a newscast's large face
    # never pays for it). Faces the fast pass found keep its boxes; the retry adds faces.
    retry_below_px: int | None = 100
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
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 2:
                raise ValueError(f"{name} must be 0, 1 or 2, got {value}")
        if self.retry_below_px is not None and self.retry_below_px < 1:
            raise ValueError(f"retry_below_px must be positive or None, got {self.retry_below_px}")
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {self.max_faces}")


class DlibHogDetector:
    """dlib's frontal-face HOG + linear SVM detector, run on a copy at most `detect_width` wide."""

    name = "dlib_hog"

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        scale = min(1.0, self.config.detect_width / width)
        searched = rgb
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            searched = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        # Grey, as FaceForensics++ detected: 1.5x faster than dlib's per-channel gradients on
        # RGB, and the same faces in every sampled frame of the sample videos.
        if self.config.grey:
            searched = cv2.cvtColor(searched, cv2.COLOR_RGB2GRAY)
        found = self._search(searched, self.config.upsample)
        retry = self.config.retry_upsample
        if retry is not None and retry != self.config.upsample and self._worth_retrying(found):
            found += [
                (box, score)
                for box, score in self._search(searched, retry)
                if all(iou(box, kept) < 0.3 for kept, _ in found)
            ]
        detections = [
            Detection(_to_source_box(box, scale, width, height), score) for box, score in found
        ]
        detections = [d for d in detections if d.box.width > 0 and d.box.height > 0]
        detections.sort(key=lambda d: d.score, reverse=True)
        return detections[: self.config.max_faces]

    def _search(self, searched: np.ndarray, upsample: int) -> list[tuple[FaceBox, float]]:
        """Boxes in the searched copy's pixels (dlib's inclusive corners made exclusive; they
        may reach past the copy's edge) and their scores."""
        rects, scores, _ = self._detector.run(searched, upsample, self.config.min_score)
        return [
            (FaceBox(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1), float(score))
            for rect, score in zip(rects, scores, strict=True)
        ]

    def _worth_retrying(self, found: list[tuple[FaceBox, float]]) -> bool:
        if not found:
            return True
        below = self.config.retry_below_px
        return below is not None and min(box.width for box, _ in found) < below


DETECTORS: dict[str, Callable[[DetectorConfig], FaceDetector]] = {"dlib_hog": DlibHogDetector}


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
