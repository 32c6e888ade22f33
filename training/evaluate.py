"""Evaluate a checkpoint on labelled videos.

    python -m training.evaluate [--checkpoint CKPT] --videos DIR_OR_SPLIT_FILE [--split-name test]

DIR holds `real/` and `fake/` sub-folders (the seed's layout; a sub-folder of `fake/`, such as
`fake/Deepfakes/`, names the manipulation method) and every video goes through the whole
pipeline. A split file (from training.data_dir) scores its extracted crops of `--split-name`.
Prints and logs to MLflow frame- and video-level AUC, accuracy at 0.5, log loss (clipped like
DFDC), EER and a per-method breakdown; writes per-video scores to a CSV. Videos with no face
count as 0.5 and are reported; unreadable videos are listed and left out of the metrics.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.config import ServiceConfig
from model.network import DEFAULT_CHECKPOINT, ModelSettings, file_sha256, load_checkpoint
from model.schema import add_arguments, parse_command
from model.service import DetectorService
from model.verdict import VerdictConfig
from model.video import SamplingConfig
from protocol.wire import FACE_RULES, find_videos
from training.data_dir import check_crop_size, load_split
from training.dataset import FAKE_CLASS, REAL_CLASS, FaceCrops, split_items
from training.experiments import start_tracked_run
from training.scoring import (
    CropScores,
    analyze_files,
    evaluation_metrics,
    score_crops,
    video_probabilities,
)


@dataclass
class Evaluation:
    """Per-face scores of the readable videos, plus what could not be scored."""

    scores: CropScores
    methods: dict[str, str]  # video id -> "real" or the manipulation method
    no_face: dict[str, int] = field(default_factory=dict)  # video id -> label
    unreadable: dict[str, str] = field(default_factory=dict)  # video id -> error


def evaluate_folder(folder: Path, service: DetectorService) -> Evaluation:
    """Every video of `folder/real` and `folder/fake`, scored as the server scores them."""
    rows: dict[str, list] = {"video_ids": [], "frame_indices": [], "labels": [], "probs": []}
    methods: dict[str, str] = {}
    no_face: dict[str, int] = {}
    unreadable: dict[str, str] = {}
    verdicts: dict[str, float] = {}
    for label_name, label in (("real", REAL_CLASS), ("fake", FAKE_CLASS)):
        label_dir = folder / label_name
        paths = find_videos([label_dir]) if label_dir.is_dir() else []
        for outcome in analyze_files(paths, service):
            video_id = str(outcome.path.relative_to(folder))
            relative = outcome.path.relative_to(label_dir).parts
            methods[video_id] = relative[0] if len(relative) > 1 else label_name
            if outcome.verdict is None:
                unreadable[video_id] = outcome.error
                continue
            verdict = outcome.verdict
            if verdict.fake_probability is None:
                no_face[video_id] = label
            else:
                verdicts[video_id] = verdict.fake_probability
            for face in verdict.faces.faces:
                rows["video_ids"].append(video_id)
                rows["frame_indices"].append(face.frame_index)
                rows["labels"].append(label)
                rows["probs"].append(face.fake_probability)
    scores = CropScores(
        video_ids=rows["video_ids"],
        frame_indices=rows["frame_indices"],
        labels=np.array(rows["labels"], dtype=np.int64),
        probabilities=np.array(rows["probs"], dtype=np.float32),
        loss=float("nan"),
        verdicts=verdicts,
    )
    return Evaluation(scores, methods, no_face, unreadable)


def evaluate_split(
    split_file: Path, split_name: str, network, settings: ModelSettings, batch_size: int
) -> Evaluation:
    split = load_split(split_file)
    check_crop_size(split, settings.input_size)
    items = split_items(split, split_name, split["image_dir"], fake_source="videos")
    scores = score_crops(network, FaceCrops(items, settings, train=False), batch_size, "fp32")
    methods, no_face = {}, {}
    for video in split["videos"]:
        if video["split"] != split_name:
            continue
        parent = Path(video["video"]).parent.name
        methods[video["video_id"]] = parent if parent not in ("real", "fake") else video["label"]
        if not video["crops"]:
            no_face[video["video_id"]] = int(video["label"] == "fake")
    return Evaluation(scores, methods, no_face)


def subset(scores: CropScores, video_ids: set[str]) -> CropScores:
    keep = [i for i, video_id in enumerate(scores.video_ids) if video_id in video_ids]
    return CropScores(
        [scores.video_ids[i] for i in keep],
        [scores.frame_indices[i] for i in keep],
        scores.labels[keep],
        scores.probabilities[keep],
        scores.loss,
        scores.verdicts,
    )


def all_metrics(evaluation: Evaluation, aggregation: str) -> dict[str, float]:
    """Overall metrics, then `<method>_video_auc` etc. for each method's fakes against all reals."""
    metrics = evaluation_metrics(evaluation.scores, aggregation, evaluation.no_face)
    reals = {v for v, m in evaluation.methods.items() if m == "real"}
    fake_methods = sorted({m for m in evaluation.methods.values() if m != "real"})
    if len(fake_methods) > 1:
        for method in fake_methods:
            videos = reals | {v for v, m in evaluation.methods.items() if m == method}
            no_face = {v: label for v, label in evaluation.no_face.items() if v in videos}
            scores = subset(evaluation.scores, videos)
            if len(scores.labels) == 0:
                continue
            per_method = evaluation_metrics(scores, aggregation, no_face)
            metrics.update({f"{method}_{k}": v for k, v in per_method.items() if "video_" in k})
    return metrics


def write_csv(evaluation: Evaluation, aggregation: str, path: Path) -> None:
    videos = video_probabilities(evaluation.scores, aggregation)
    faces = Counter(evaluation.scores.video_ids)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["video", "label", "method", "fake_probability", "faces", "note"])
        for video_id, method in sorted(evaluation.methods.items()):
            label = "real" if method == "real" else "fake"
            if video_id in evaluation.unreadable:
                writer.writerow([video_id, label, method, "", 0, evaluation.unreadable[video_id]])
            elif video_id in evaluation.no_face or video_id not in videos:
                writer.writerow([video_id, label, method, "", 0, "no_face (counted as 0.5)"])
            else:
                probability = videos[video_id][1]
                writer.writerow(
                    [video_id, label, method, f"{probability:.6f}", faces[video_id], ""]
                )


def summary_line(metrics: dict[str, float]) -> str:
    return (
        f"evaluate: video AUC {_fmt(metrics['video_auc'])}, "
        f"frame AUC {_fmt(metrics['frame_auc'])}, "
        f"accuracy {_fmt(metrics['video_accuracy'])}, log loss {_fmt(metrics['video_log_loss'])}, "
        f"EER {_fmt(metrics['video_eer'])}, videos {int(metrics['videos'])} "
        f"(no face {int(metrics['videos_no_face'])})"
    )


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


@dataclass(frozen=True)
class EvaluateCommand:
    """`python -m training.evaluate`'s settings, a flag per field."""

    videos: Path = field(metadata={"help": "DIR with real/ fake/, or a split file"})
    checkpoint: Path = DEFAULT_CHECKPOINT
    split_name: str = field(default="test", metadata={"help": "which split of a split file"})
    csv: Path = Path("evaluation.csv")
    batch_size: int = 32
    experiment: str = "deepfake-serve-evaluation"
    mlflow: bool = field(default=True, metadata={"help": "--no-mlflow: print only, log nothing"})
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, EvaluateCommand)
    command = parse_command(parser, EvaluateCommand, argv)

    if command.videos.is_dir():
        served = ServiceConfig(sampling=command.sampling, verdict=command.verdict)
        service = DetectorService.from_checkpoint(command.checkpoint, served)
        settings = service.settings
        evaluation = evaluate_folder(command.videos, service)
    else:
        network, settings = load_checkpoint(command.checkpoint)
        evaluation = evaluate_split(
            command.videos, command.split_name, network, settings, command.batch_size
        )
    if len(evaluation.scores.labels) == 0:
        print("evaluate: no face found in any readable video; nothing to score", file=sys.stderr)
        return 1
    aggregation = command.verdict.aggregation
    if evaluation.scores.verdicts is None and aggregation not in FACE_RULES:
        aggregation = "mean"  # crops of a split have no people to take the person rule over
    metrics = all_metrics(evaluation, aggregation)
    write_csv(evaluation, aggregation, command.csv)
    for name, value in sorted(metrics.items()):
        print(f"  {name}: {value:.4f}" if isinstance(value, float) else f"  {name}: {value}")
    for video_id, error in sorted(evaluation.unreadable.items()):
        print(f"  unreadable {video_id}: {error}")
    if command.mlflow:
        log_evaluation(command, settings, aggregation, metrics)
    print(summary_line(metrics))
    return 0


def log_evaluation(
    command: EvaluateCommand, settings: ModelSettings, aggregation: str, metrics: dict[str, float]
) -> None:
    params = {
        "checkpoint": str(command.checkpoint),
        "checkpoint_sha256": file_sha256(command.checkpoint),
        "model_version": settings.version,
        "videos": str(command.videos),
        "split_name": command.split_name if not command.videos.is_dir() else "",
        "aggregation": aggregation,
        "interval": command.sampling.interval,
    }
    with start_tracked_run(command.experiment, None, params) as run:
        run.log_metrics({k: v for k, v in metrics.items() if not math.isnan(v)}, step=0)
        run.log_artifact(command.csv, "evaluation")


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
