"""Score face crops with a network and turn the scores into frame- and video-level metrics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.aggregation import aggregate
from model.device import autocast
from model.errors import VideoInputError
from model.network import fake_probabilities_from_logits
from model.service import DetectorService
from model.verdict import VideoVerdict
from training.dataset import Collate, FaceCrops
from training.distributed import CPU
from training.metrics import NO_FACE_SCORE, binary_metrics


@dataclass
class CropScores:
    """One row per face crop."""

    video_ids: list[str]
    frame_indices: list[int]
    labels: np.ndarray  # (N,) int64, 1 = fake
    probabilities: np.ndarray  # (N,) float32 fake probability
    loss: float  # mean cross-entropy (unweighted)
    # video id -> the served verdict's probability, where whole videos went through the
    # service (its person rule needs the people, which crops alone do not have).
    verdicts: dict[str, float] | None = None


@torch.inference_mode()
def score_crops(
    network: nn.Module,
    dataset: FaceCrops,
    batch_size: int,
    precision: str,
    device: torch.device = CPU,
    progress: bool = False,
) -> CropScores:
    network.eval()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=Collate(dataset.settings))
    probabilities, losses = [], []
    for batch, labels, _ in tqdm(loader, desc="score", disable=not progress, leave=False):
        batch = batch.to(device, memory_format=torch.channels_last)
        with autocast(precision, device.type):
            logits = network(batch).float().cpu()
        losses.append(nn.functional.cross_entropy(logits, labels, reduction="sum").item())
        probabilities.append(fake_probabilities_from_logits(logits, dataset.settings).numpy())
    items = dataset.items
    return CropScores(
        video_ids=[item.video_id for item in items],
        frame_indices=[item.frame_index for item in items],
        labels=dataset.labels(),
        probabilities=np.concatenate(probabilities) if probabilities else np.zeros(0, np.float32),
        loss=sum(losses) / max(1, len(items)),
    )


def video_probabilities(
    scores: CropScores, aggregation: str
) -> dict[str, tuple[int, float | None]]:
    """video id -> (label, fake probability): the served verdict's where `scores` has them,
    else `aggregation` (a face rule) over the video's frames' faces."""
    frames: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    labels = {}
    for video_id, frame_index, label, probability in zip(
        scores.video_ids, scores.frame_indices, scores.labels, scores.probabilities, strict=True
    ):
        frames[video_id][frame_index].append(float(probability))
        labels[video_id] = int(label)
    if scores.verdicts is not None:
        return {video_id: (labels[video_id], scores.verdicts[video_id]) for video_id in frames}
    return {
        video_id: (labels[video_id], aggregate(list(per_frame.values()), aggregation))
        for video_id, per_frame in frames.items()
    }


def video_scores(scores: CropScores, aggregation: str) -> tuple[np.ndarray, np.ndarray]:
    """(V,) labels and (V,) fake probabilities per video, NO_FACE_SCORE where none was scored."""
    videos = video_probabilities(scores, aggregation).values()
    labels = np.array([label for label, _ in videos], dtype=np.int64)
    probabilities = np.array([NO_FACE_SCORE if p is None else p for _, p in videos], np.float64)
    return labels, probabilities


def evaluation_metrics(
    scores: CropScores,
    aggregation: str,
    no_face_videos: dict[str, int] | None = None,
) -> dict[str, float]:
    """frame_* metrics over crops, video_* over videos; `no_face_videos` (id -> label) count
    as NO_FACE_SCORE in the video metrics."""
    metrics = {
        f"frame_{k}": v for k, v in binary_metrics(scores.labels, scores.probabilities).items()
    }
    labels, probabilities = video_scores(scores, aggregation)
    no_face_labels = list((no_face_videos or {}).values())
    labels = np.concatenate([labels, np.array(no_face_labels, dtype=np.int64)])
    probabilities = np.concatenate([probabilities, np.full(len(no_face_labels), NO_FACE_SCORE)])
    metrics.update({f"video_{k}": v for k, v in binary_metrics(labels, probabilities).items()})
    metrics["loss"] = scores.loss
    metrics["videos"] = len(labels)
    metrics["videos_no_face"] = len(no_face_videos or {})
    return metrics


@dataclass
class VideoOutcome:
    """One video through the whole pipeline: a verdict, or the reason it could not be read."""

    path: Path
    verdict: VideoVerdict | None
    error: str | None


def analyze_files(
    paths: list[Path], service: DetectorService, progress: bool = True
) -> Iterator[VideoOutcome]:
    """Verdict per video file, in order; an unreadable file yields its error and the run goes on."""
    for path in tqdm(paths, desc="videos", unit="video", disable=not progress):
        try:
            analysis = service.analyze(path)
        except VideoInputError as error:
            yield VideoOutcome(path, None, str(error))
            continue
        yield VideoOutcome(path, analysis.verdict, None)
