"""Cut face crops out of labelled videos with the serving pipeline, for training.

    python -m training.extract_faces --video-dirs videos [more] --image-dir images \
        --crop-size 224 --interval 20

Reads `VIDEO_DIR/real/**` and `VIDEO_DIR/fake/**` of every `--video-dirs` folder (any container PyAV
reads) and writes, per video, `IMAGE_DIR/<label>/<video-id>/<frame>_<face>.png` crops and a
`faces.json` with each face's frame, time, boxes, detector score and 68 landmarks (crop pixels,
for self-blending). Crops are cut at `--crop-size`, which must be the input size of the model
they will train: the server cuts each face once, at that size, and training then sees the same
pixels (training.train refuses crops of another size). Video ids (the path under real/ or fake/,
`__` for `/`) must be unique across all folders. A video whose `faces.json` exists is skipped,
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
from tqdm import tqdm

from model.errors import DeepfakeServeError
from model.faces import DetectorConfig, FaceDetector, box_in_crop, make_detector
from model.network import ModelSettings
from model.pipeline import extract_faces
from model.schema import add_arguments, parse_command
from model.video import SamplingConfig
from protocol.wire import find_videos
from training.landmarks import LandmarkPredictor

LABELS = ("real", "fake")
FACES_FILE = "faces.json"


@dataclass(frozen=True)
class ExtractionConfig:
    # Every interval-th frame, as asked (no minimum for short clips: the Makefile asks for
    # `--num-frames 4` of each clip).
    sampling: SamplingConfig = dataclasses.field(
        default_factory=lambda: SamplingConfig(min_frames=1)
    )
    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)
    # The checkpoint format's defaults: crops cut as the network will see them.
    crop_size: int = dataclasses.field(
        default=ModelSettings.input_size,
        metadata={"help": "saved crop side in px: the input size of the model to train"},
    )
    crop_scale: float = ModelSettings.face_crop_scale
    landmarks: bool = True  # 68 points per face, for self-blending


@dataclass(frozen=True)
class VideoJob:
    video_path: Path
    label: str
    video_id: str
    output_dir: Path


@dataclass(frozen=True)
class ExtractionOutcome:
    video_id: str
    label: str
    frames: int = 0
    faces: int = 0
    skipped: bool = False
    error: str | None = None


def video_id_of(path_in_label_dir: Path) -> str:
    """A video's id from its path under `real/` or `fake/`: `a/b.mp4` -> `a__b`."""
    return "__".join(Path(path_in_label_dir).with_suffix("").parts)


def video_jobs(video_dirs: Sequence[Path], image_dir: Path) -> list[VideoJob]:
    """One job per video under `real/` and `fake/` of each folder, all into `image_dir`.
    ValueError for a folder that does not exist or has neither, or a video id found twice."""
    jobs: dict[str, VideoJob] = {}
    for video_dir in video_dirs:
        if not any((video_dir / label).is_dir() for label in LABELS):
            problem = "does not exist" if not video_dir.exists() else "has no real/ or fake/"
            raise ValueError(f"video folder {video_dir} {problem}")
        for label in LABELS:
            label_dir = video_dir / label
            if not label_dir.is_dir():
                continue
            for path in find_videos([label_dir]):
                video_id = video_id_of(path.relative_to(label_dir))
                if video_id in jobs:
                    raise ValueError(
                        f"video id {video_id!r} is both {jobs[video_id].video_path} and {path}: "
                        "video ids must be unique across the video folders (rename one)"
                    )
                jobs[video_id] = VideoJob(path, label, video_id, image_dir / label / video_id)
    return list(jobs.values())


@lru_cache(maxsize=1)
def _tools(detector_config: DetectorConfig, landmarks: bool):
    """Detector and landmark model, built once per worker process."""
    return make_detector(detector_config), (LandmarkPredictor() if landmarks else None)


def extract_video(job: VideoJob, config: ExtractionConfig) -> ExtractionOutcome:
    """Write one video's crops and faces.json; written to a temporary folder, then renamed."""
    if (job.output_dir / FACES_FILE).is_file():
        return ExtractionOutcome(job.video_id, job.label, skipped=True)
    detector, landmark_predictor = _tools(config.detector, config.landmarks)
    try:
        record = _extract(job, config, detector, landmark_predictor)
    except DeepfakeServeError as error:
        return ExtractionOutcome(job.video_id, job.label, error=str(error))
    faces = sum(len(frame["faces"]) for frame in record["frames"])
    return ExtractionOutcome(job.video_id, job.label, frames=len(record["frames"]), faces=faces)


def _extract(
    job: VideoJob,
    config: ExtractionConfig,
    detector: FaceDetector,
    landmark_predictor: LandmarkPredictor | None,
) -> dict:
    settings = ModelSettings(input_size=config.crop_size, face_crop_scale=config.crop_scale)
    video_faces = extract_faces(job.video_path, config.sampling, detector, settings)
    partial = job.output_dir.with_name(job.output_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    frames = []
    for frame in video_faces.frames:
        faces = []
        for number, face in enumerate(frame.faces):
            file_name = f"{frame.frame_index:06d}_{number}.png"
            cv2.imwrite(str(partial / file_name), cv2.cvtColor(face.crop, cv2.COLOR_RGB2BGR))
            entry = {"file": file_name, **face.as_json()}
            if landmark_predictor is not None:
                box = box_in_crop(face.box, face.crop_box, config.crop_size)
                entry["landmarks"] = landmark_predictor.predict(face.crop, box).tolist()
            faces.append(entry)
        frames.append(
            {"frame_index": frame.frame_index, "timestamp_s": frame.timestamp_s, "faces": faces}
        )
    record = {
        "video": str(job.video_path),
        "video_id": job.video_id,
        "label": job.label,
        "info": dataclasses.asdict(video_faces.info),
        "sampling": dataclasses.asdict(config.sampling),
        "crop_size": config.crop_size,
        "crop_scale": config.crop_scale,
        "frames": frames,
    }
    (partial / FACES_FILE).write_text(json.dumps(record, indent=1))
    shutil.rmtree(job.output_dir, ignore_errors=True)
    partial.rename(job.output_dir)
    return record


def extract_all(
    jobs: list[VideoJob], config: ExtractionConfig, workers: int, progress: bool = True
) -> list[ExtractionOutcome]:
    """Run every job, `workers` videos at a time, with a progress bar."""
    bar = tqdm(total=len(jobs), unit="video", disable=not progress, desc="extract faces")
    outcomes = []
    if workers <= 1:
        for job in jobs:
            outcomes.append(extract_video(job, config))
            bar.update()
    else:
        # Spawned, not forked: a fork of a process whose torch or OpenMP threads have run (a
        # caller that trained or scored first) can hang in the child on a lock those threads held.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
            for outcome in pool.map(extract_video, jobs, [config] * len(jobs)):
                outcomes.append(outcome)
                bar.update()
    bar.close()
    return outcomes


def summary(outcomes: list[ExtractionOutcome]) -> str:
    done = [o for o in outcomes if not o.skipped and o.error is None]
    lines = [
        f"extract_faces: {len(outcomes)} videos ({len(done)} extracted, "
        f"{sum(o.skipped for o in outcomes)} already done, "
        f"{sum(o.error is not None for o in outcomes)} unreadable), "
        f"{sum(o.frames for o in done)} frames, {sum(o.faces for o in done)} faces, "
        f"{sum(o.faces == 0 for o in done)} videos with no face"
    ]
    lines += [f"  unreadable {o.label}/{o.video_id}: {o.error}" for o in outcomes if o.error]
    return "\n".join(lines)


@dataclass(frozen=True)
class ExtractCommand:
    """`python -m training.extract_faces`'s settings, a flag per field."""

    video_dirs: tuple[Path, ...] = field(
        default=(Path("videos"),), metadata={"help": "folders with real/ and fake/"}
    )
    image_dir: Path = Path("images")
    workers: int = field(default=2, metadata={"help": "videos processed in parallel"})
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, ExtractCommand)
    command = parse_command(parser, ExtractCommand, argv)
    try:
        jobs = video_jobs(command.video_dirs, command.image_dir)
    except ValueError as error:
        print(f"extract_faces: {error}", file=sys.stderr)
        return 1
    if not jobs:
        folders = ", ".join(str(folder) for folder in command.video_dirs)
        print(f"extract_faces: no videos under real/ or fake/ of {folders}", file=sys.stderr)
        return 1
    outcomes = extract_all(jobs, command.extraction, command.workers)
    print(summary(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
