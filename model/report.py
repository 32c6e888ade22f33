"""The JSON a client gets for a video: the verdict, the evidence behind it, and what made it.

Versioned by `protocol.wire.SCHEMA_VERSION` (docs/api.md): fields are only added within a major
version; renaming or removing one bumps it.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from model.explain import heatmap_grey, overlay
from model.pipeline import Face
from model.provenance import Provenance
from model.quality import QualityFlag
from model.verdict import CrowdCorrection, PersonVerdict, VideoVerdict
from model.video import SamplingConfig
from protocol.wire import NO_FACE, SCHEMA_VERSION

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
    path_chosen_by: str  # "configured", "cpu flags", "gpu" or "measured" (timed at start)
    # (1.2) Where the network runs: "cpu" or the worker's GPU, "cuda:0 (NVIDIA H200)".
    device: str
    detector: str
    # Each candidate path's speed when they were timed at worker start (images/s); else empty.
    measured_images_per_s: dict[str, float]
    # How the scores were calibrated (schema 1.1): {"method": "temperature" or "none", ...}.
    calibration: dict[str, Any]


def verdict_report(
    verdict: VideoVerdict,
    quality_flags: list[QualityFlag],
    sampling: SamplingConfig,
    model: ModelInfo,
    provenance: Provenance | None = None,
    include_crops: bool = False,
) -> dict[str, Any]:
    """The response body for one video (schema `SCHEMA_VERSION`)."""
    faces = verdict.faces
    frames = [
        {
            "frame_index": frame.frame_index,
            "timestamp_s": round(frame.timestamp_s, 4),
            "faces": [
                {**face.as_json(), "crop_jpeg": encode_image_base64(face.crop, ".jpg")}
                if include_crops
                else face.as_json()
                for face in frame.faces
            ],
        }
        for frame in faces.frames
    ]
    info = faces.info
    suspect = verdict.verdict_person
    return {
        "schema_version": SCHEMA_VERSION,
        "label": verdict.label,
        "label_reason": verdict.reason(),
        "fake_probability": (
            None if verdict.label == NO_FACE else round(float(verdict.fake_probability), 6)
        ),
        "threshold": verdict.config.threshold,
        "aggregation": verdict.config.aggregation,
        "verdict_person": None if suspect is None else suspect.person.person_id,
        # person_max over several people: the verdict person's own probability and the
        # video's after comparing them with as many real people (docs/api.md).
        "crowd_correction": None if verdict.crowd is None else crowd_report(verdict.crowd),
        "people": [person_report(person) for person in verdict.people],
        "quality_flags": [flag.as_json() for flag in quality_flags],
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
            "bit_rate": info.bit_rate,
        },
        # (1.2) Beside the verdict, never part of it: no score uses it.
        "provenance": provenance.as_json() if provenance else None,
        "sampling": asdict(sampling),
        "model": asdict(model),
        "timing_ms": {stage: round(ms, 1) for stage, ms in verdict.timing_ms.items()},
    }


def crowd_report(crowd: CrowdCorrection) -> dict[str, Any]:
    """How the video's probability was drawn from its most suspicious of several people."""
    return {
        "people": crowd.people,
        "person_probability": round(crowd.person_probability, 6),
        "fake_probability": round(crowd.fake_probability, 6),
    }


def person_report(judged: PersonVerdict) -> dict[str, Any]:
    """One person: who (an id, a representative box), when, how suspicious, and the spans."""
    person = judged.person
    representative = person.representative
    return {
        "person_id": person.person_id,
        "label": judged.label,
        "fake_probability": round(judged.fake_probability, 6),
        "faces": len(person.faces),
        "first_s": round(person.first_s, 4),
        "last_s": round(person.last_s, 4),
        "frame_indices": [face.frame_index for face in person.faces],
        "representative": {
            "frame_index": representative.frame_index,
            "box": representative.box.as_list(),
        },
        "segments": [segment.as_json() for segment in judged.segments],
    }


def explanation_report(face: Face, heatmap: np.ndarray) -> dict[str, Any]:
    """One explained face: where it is, its score, and its Grad-CAM map as PNGs."""
    return {
        "frame_index": face.frame_index,
        "timestamp_s": round(face.timestamp_s, 4),
        "box": face.box.as_list(),
        "fake_probability": round(face.fake_probability, 6),
        "method": "grad-cam",
        "crop_png": encode_image_base64(face.crop, ".png"),
        "heatmap_png": encode_image_base64(heatmap_grey(heatmap), ".png"),
        "overlay_png": encode_image_base64(overlay(face.crop, heatmap), ".png"),
    }


def encode_image_base64(rgb: np.ndarray, suffix: str) -> str:
    """An (H, W, 3) RGB or (H, W) grey uint8 image as base64 PNG (".png") or JPEG (".jpg")."""
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    params = [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY] if suffix == ".jpg" else []
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {suffix}")
    return base64.b64encode(encoded.tobytes()).decode("ascii")
