"""Training-time image augmentation of face crops: what video platforms and cameras do to faces."""

from __future__ import annotations

from dataclasses import dataclass

import av
import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Probability of each augmentation per crop, and its range."""

    flip: float = 0.5
    jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)
    blur: float = 0.2
    noise: float = 0.2
    colour: float = 0.3
    downscale: float = 0.0  # shrink and re-enlarge: a small or low-resolution face
    downscale_range: tuple[float, float] = (0.35, 0.9)
    # Video compression, not only JPEG: the crop coded as one H.264 picture (x264, 4:2:0
    # chroma) at a CRF drawn from h264_crf, after every other change, as a swap is encoded
    # after it was blended.
    h264: float = 0.0
    h264_crf: tuple[int, int] = (23, 40)

    def __post_init__(self) -> None:
        low, high = self.h264_crf
        if not 0 <= low <= high <= 51:
            raise ValueError(f"h264_crf must be a range inside [0, 51], got {self.h264_crf}")


def augment(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """A randomly degraded copy of an (H, W, 3) uint8 RGB crop."""
    return augment_with_mask(image, None, rng, config)[0]


def augment_with_mask(
    image: np.ndarray,
    mask: np.ndarray | None,
    rng: np.random.Generator,
    config: AugmentConfig,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`augment`, and the (H, W) `mask` of the crop's blended region flipped with it (the only
    change here that moves pixels); the same draws as `augment`, whether a mask is given."""
    if rng.random() < config.flip:
        image = image[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    if rng.random() < config.colour:
        contrast, brightness = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
        image = np.clip(image.astype(np.float32) * contrast + brightness, 0, 255).astype(np.uint8)
    if rng.random() < config.blur:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=rng.uniform(0.5, 1.5))
    if rng.random() < config.downscale:
        height, width = image.shape[:2]
        factor = rng.uniform(*config.downscale_range)
        small = (max(8, round(width * factor)), max(8, round(height * factor)))
        image = cv2.resize(
            cv2.resize(image, small, interpolation=cv2.INTER_AREA),
            (width, height),
            interpolation=cv2.INTER_LINEAR,
        )
    if rng.random() < config.noise:
        noise = rng.normal(0, rng.uniform(2, 8), size=image.shape)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < config.jpeg:
        quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        ok, encoded = cv2.imencode(
            ".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if ok:
            image = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    if rng.random() < config.h264:
        image = h264_roundtrip(image, int(rng.integers(config.h264_crf[0], config.h264_crf[1] + 1)))
    return np.ascontiguousarray(image), None if mask is None else np.ascontiguousarray(mask)


def h264_roundtrip(image: np.ndarray, crf: int) -> np.ndarray:
    """The (H, W, 3) uint8 RGB picture encoded as one H.264 intra frame by x264 at `crf` and
    decoded again. 4:2:0 needs even sides: an odd edge is padded by reflection, then cut off."""
    height, width = image.shape[:2]
    padded = cv2.copyMakeBorder(image, 0, height % 2, 0, width % 2, cv2.BORDER_REFLECT_101)
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = padded.shape[1], padded.shape[0]
    encoder.pix_fmt = "yuv420p"
    # One thread: x264's output is then the same on every machine and run (seeded training).
    encoder.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")
    packets = [*encoder.encode(picture.reformat(format="yuv420p")), *encoder.encode(None)]
    decoder = av.CodecContext.create("h264", "r")
    decoded = [frame for packet in [*packets, None] for frame in decoder.decode(packet)]
    if len(decoded) != 1:
        raise RuntimeError(f"x264 round trip gave {len(decoded)} pictures instead of one")
    return decoded[0].to_ndarray(format="rgb24")[:height, :width]
