"""Shared fixtures: the sample videos in ../shared/data and their labels."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = Path(os.environ.get("DEEPFAKE_SAMPLE_DATA", REPO_ROOT.parent / "shared" / "data"))


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


def _read_labels() -> list[SampleVideo]:
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


@pytest.fixture(scope="session")
def sample_videos() -> list[SampleVideo]:
    if not (SAMPLE_DATA / "labels.csv").is_file():
        pytest.skip(f"sample videos not found in {SAMPLE_DATA} (set DEEPFAKE_SAMPLE_DATA)")
    return _read_labels()


@pytest.fixture(scope="session")
def no_face_video(sample_videos: list[SampleVideo]) -> SampleVideo:
    return next(video for video in sample_videos if not video.face_frames)


@pytest.fixture(scope="session")
def one_face_video(sample_videos: list[SampleVideo]) -> SampleVideo:
    return next(video for video in sample_videos if video.name == "a_wolfgang_c1.mp4")
