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


# A few sample videos, three identities and a video with no face, for the training tests.
SMALL_SET = {
    "real": [
        "a_wolfgang_c1.mp4",
        "a_still_grace_hopper.mp4",
        "a_still_astronaut.mp4",
        "a_noface_caminandes.mp4",
    ],
    "fake": [
        "a_fs_wolfgang_c1__grace_hopper.mp4",
        "a_fs_still_grace_hopper__astronaut.mp4",
        "a_fs_still_astronaut__grace_hopper.mp4",
    ],
}


@pytest.fixture(scope="session")
def small_video_dir(sample_videos, tmp_path_factory) -> Path:
    """videos/real and videos/fake with links to a few sample videos (never copies)."""
    folder = tmp_path_factory.mktemp("videos")
    for label, names in SMALL_SET.items():
        (folder / label).mkdir()
        for name in names:
            (folder / label / name).symlink_to(SAMPLE_DATA / "videos" / label / name)
    return folder


@pytest.fixture(scope="session")
def extracted_images(small_video_dir, tmp_path_factory):
    """(image dir, outcomes) after training.extract_faces over the small set."""
    from model.video import SamplingConfig
    from training.extract_faces import ExtractionConfig, extract_all, video_jobs

    image_dir = tmp_path_factory.mktemp("images")
    config = ExtractionConfig(sampling=SamplingConfig(interval=20))
    outcomes = extract_all(video_jobs(small_video_dir, image_dir), config, 1, progress=False)
    return image_dir, outcomes


@pytest.fixture(scope="session")
def split_file(extracted_images) -> Path:
    """A split of the small set by identity, from labels.csv."""
    from training.data_dir import build_split, write_split

    image_dir, _ = extracted_images
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    split = build_split(image_dir, SAMPLE_DATA / "labels.csv", fractions, seed=0)
    path = image_dir / "split.json"
    write_split(split, path)
    return path
