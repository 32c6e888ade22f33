"""Contact sheet: the faces the server analysed, in a grid a person can look at.

One section per video: a title with the verdict, then the face crops in time order, each
captioned with its frame time and fake probability and framed red (at or above the threshold)
or green (below). Built from responses sent with `crops=true`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

TILE = 128  # px per face
CAPTION = 22  # px under each face
TITLE = 34  # px above each video's faces
COLUMNS = 8
MAX_FACES_PER_VIDEO = 32  # spread evenly over the video past this
FAKE_RGB = (220, 40, 40)
REAL_RGB = (40, 170, 60)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def write_contact_sheet(reports: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    """One PNG with a section per video; `reports` maps a video's name to its response."""
    sections = [video_section(name, report) for name, report in reports.items()]
    width = max(section.shape[1] for section in sections)
    padded = [
        np.pad(section, ((0, 8), (0, width - section.shape[1]), (0, 0)), constant_values=255)
        for section in sections
    ]
    sheet = np.concatenate(padded, axis=0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write the contact sheet to {path}")


def video_section(name: str, report: Mapping[str, Any]) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the title line and the grid of captioned faces of one video."""
    faces = sorted(  # each person's faces together (schema 1.1), in time order
        (
            (frame["timestamp_s"], face)
            for frame in report["frames"]
            for face in frame["faces"]
            if "crop_jpeg" in face
        ),
        key=lambda item: (item[1].get("person_id", 0), item[0]),
    )
    if len(faces) > MAX_FACES_PER_VIDEO:
        keep = np.linspace(0, len(faces) - 1, MAX_FACES_PER_VIDEO).round().astype(int)
        faces = [faces[i] for i in keep]
    columns = min(COLUMNS, max(1, len(faces)))
    rows = max(1, -(-len(faces) // columns))
    cell_height = TILE + CAPTION
    heading = title(name, report)
    (text_width, _), _ = cv2.getTextSize(heading, FONT, 0.55, 1)
    width = max(columns * TILE, text_width + 12)
    section = np.full((TITLE + rows * cell_height, width, 3), 255, dtype=np.uint8)
    _text(section, heading, (6, TITLE - 11), 0.55, (0, 0, 0))
    if not faces:
        _text(section, "no face found in the sampled frames", (6, TITLE + 40), 0.5, (90, 90, 90))
    threshold = report["threshold"]
    for position, (timestamp, face) in enumerate(faces):
        row, column = divmod(position, columns)
        x, y = column * TILE, TITLE + row * cell_height
        tile = cv2.resize(decode_image_base64(face["crop_jpeg"]), (TILE - 6, TILE - 6))
        colour = FAKE_RGB if face["fake_probability"] >= threshold else REAL_RGB
        section[y : y + TILE, x : x + TILE] = colour
        section[y + 3 : y + TILE - 3, x + 3 : x + TILE - 3] = tile
        who = f"P{face['person_id']} " if "person_id" in face else ""
        caption = f"{who}{timestamp:.1f}s p={face['fake_probability']:.2f}"
        _text(section, caption, (x + 4, y + TILE + 15), 0.42, colour)
    return section


def title(name: str, report: Mapping[str, Any]) -> str:
    label = report["label"].upper()
    if report["fake_probability"] is None:
        return f"{Path(name).name}: {label}"
    suspect = report.get("verdict_person")
    people = len(report.get("people", []))
    return (
        f"{Path(name).name}: {label} p={report['fake_probability']:.2f} "
        f"(threshold {report['threshold']}, {report['aggregation']} of "
        f"{report['faces_found']} faces"
        + (f", person {suspect} of {people}" if suspect is not None else "")
        + ")"
    )


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, rgb) -> None:
    cv2.putText(image, text, origin, FONT, scale, rgb, 1, cv2.LINE_AA)


def decode_image_base64(text: str) -> np.ndarray:
    """A base64 PNG or JPEG of the response as (H, W, 3) RGB uint8 (grey comes back as RGB)."""
    data = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a PNG or JPEG image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
