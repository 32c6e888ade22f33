"""The JSON a client gets for a video: the verdict, the evidence behind it, and what made it.

Versioned by `SCHEMA_VERSION` (README "Response schema"): fields are only added within a major
version; renaming or removing one bumps it.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from model.pipeline import NO_FACE, PipelineConfig, VideoVerdict

SCHEMA_VERSION = "1.0"
CROP_JPEG_QUALITY = 90


@dataclass(frozen=True)
class ModelInfo:
    """What served the verdict, reported in every response's `model` block."""

    name: str
    version: str
    checkpoint_sha256: str
    input_size: int
    inference_path: str  # the engine the worker chose for this CPU (model/runtime.py PATHS)
    precision: str  # what that engine computes in: "fp32", "bf16" or "int8"
    path_chosen_by: str  # "configured", "cpu flags" or "measured" (timed at worker start)
    detector: str
    # Each candidate path's speed when they were timed at worker start (images/s); else empty.
    measured_images_per_s: dict[str, float]


def verdict_report(
    verdict: VideoVerdict,
    config: PipelineConfig,
    model: ModelInfo,
    include_crops: bool = False,
) -> dict[str, Any]:
    """The response body for one video (schema `SCHEMA_VERSION`)."""
    faces = verdict.faces
    frames = []
    for frame, probabilities in zip(faces.frames, verdict.face_probabilities, strict=True):
        frame_faces = []
        for face, probability in zip(frame.faces, probabilities, strict=True):
            entry: dict[str, Any] = {
                "box": face.box.as_list(),
                "crop_box": face.crop_box.as_list(),
                "detector_score": round(float(face.detector_score), 4),
                "fake_probability": round(float(probability), 6),
            }
            if include_crops:
                entry["crop_jpeg"] = encode_image_base64(face.crop, ".jpg")
            frame_faces.append(entry)
        frames.append(
            {
                "frame_index": frame.frame_index,
                "timestamp_s": round(frame.timestamp_s, 4),
                "faces": frame_faces,
            }
        )
    info = faces.info
    return {
        "schema_version": SCHEMA_VERSION,
        "label": verdict.label,
        "fake_probability": (
            None if verdict.label == NO_FACE else round(float(verdict.fake_probability), 6)
        ),
        "threshold": verdict.threshold,
        "aggregation": verdict.aggregation,
        "frames_analyzed": len(faces.frames),
        "faces_found": faces.face_count,
        "frames": frames,
        "video": {
            "width": info.width,
            "height": info.height,
            "fps": round(info.fps, 4),
            "duration_s": round(info.duration_s, 4),
            "frame_count": info.frame_count,
            "codec": info.codec,
            "container": info.container,
            "rotation": info.rotation,
        },
        "sampling": asdict(config.sampling),
        "model": asdict(model),
        "timing_ms": {stage: round(ms, 1) for stage, ms in verdict.timing_ms.items()},
    }


def error_report(status: int, error: str, message: str) -> dict[str, Any]:
    """The body of every failed request: the HTTP status, an error kind, what to change."""
    return {"schema_version": SCHEMA_VERSION, "status": status, "error": error, "message": message}


def encode_image_base64(rgb: np.ndarray, suffix: str) -> str:
    """An (H, W, 3) RGB or (H, W) grey uint8 image as base64 PNG (".png") or JPEG (".jpg")."""
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    params = [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY] if suffix == ".jpg" else []
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {suffix}")
    return base64.b64encode(encoded.tobytes()).decode("ascii")


def decode_image_base64(text: str) -> np.ndarray:
    """Inverse of `encode_image_base64`: (H, W, 3) RGB uint8 (grey images come back as RGB)."""
    data = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a PNG or JPEG image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def result_line(
    name: str, label: str | None, fake_probability: float | None, error: str = ""
) -> str:
    """One results.txt line, the same from `training.infer` and the client:
    `<name> <fake probability> <label>`, `<name> no_face no_face` or `<name> error: <why>`."""
    if label is None:
        return f"{name} error: {error}"
    if label == NO_FACE or fake_probability is None:
        return f"{name} {NO_FACE} {NO_FACE}"
    return f"{name} {fake_probability:.4f} {label}"
