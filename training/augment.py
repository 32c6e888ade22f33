"""Training-time image augmentation of face crops: what video platforms and cameras do to faces."""

from __future__ import annotations

from dataclasses import dataclass

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


def augment(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """A randomly degraded copy of an (H, W, 3) uint8 RGB crop."""
    if rng.random() < config.flip:
        image = image[:, ::-1]
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
    return np.ascontiguousarray(image)
