"""The sample videos in ../shared/data (or DEEPFAKE_SAMPLE_DATA) and their labels: read, never
copied into the repository."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

SAMPLE_DATA = Path(
    os.environ.get("DEEPFAKE_SAMPLE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@dataclass(frozen=True)
class SampleVideo:
    """One row of ../shared/data/labels.csv."""

    path: Path
    label: str
    frame_count: int
    width: int
    height: int
    fps: float
    face_frames: frozenset[int]  # sampled frames (every 20th) where dlib HOG found a face

    @property
    def name(self) -> str:
        return self.path.name


def read_labels() -> list[SampleVideo]:
    with open(SAMPLE_DATA / "labels.csv", newline="") as file:
        return [
            SampleVideo(
                path=SAMPLE_DATA / row["file"],
                label=row["label"],
                frame_count=int(row["n_frames"]),
                width=int(row["width"]),
                height=int(row["height"]),
                fps=float(row["fps"]),
                face_frames=frozenset(int(i) for i in row["hog_face_frames_up1"].split()),
            )
            for row in csv.DictReader(file)
        ]
