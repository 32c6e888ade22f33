"""Cross-validate a training recipe by identity: train without some people, score them.

    python -m training.crossval --split images/split.json --config training/demo.yaml \
        [--folds "pexels_woman;pyfeat_man;eileen_collins,grace_hopper,multi_face_group"]

Each fold holds out the videos of some groups (identities, from training.data_dir), trains the
recipe on the rest exactly as `training.train` would, and scores the held-out real videos and
the fakes made on them. With an SBI-only recipe the held-out face swaps are also a manipulation
method the model never saw. Out-of-fold scores are pooled and reported as video AUC, frame AUC
and EER with bootstrap 95% intervals (videos resampled within each class), logged as one MLflow
run beside the folds' training runs, and written to `--output`. The recipe's last epoch is
scored: the epoch count is part of the recipe, not picked on the held-out people.
Each fold's checkpoint also judges its held-out videos whole, as the server does (people
linked, the person rule): `served_video_auc` beside `served_mean_video_auc`, the mean over the
same sampled faces, so the served rule is measured on people it never saw.
Default folds: one per group that has faces (leave-one-identity-out).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from model.aggregation import aggregate
from model.config import ServiceConfig
from model.network import load_checkpoint
from model.service import DetectorService
from protocol.wire import FAKE, REAL, UNCERTAIN
from training.calibration import (
    expected_calibration_error,
    fit_temperature,
    reliability_figure,
    with_temperature,
)
from training.data_dir import load_split, write_split
from training.dataset import FaceCrops, split_items
from training.metrics import NO_FACE_SCORE, bootstrap_interval, equal_error_rate
from training.scoring import (
    CropScores,
    analyze_files,
    evaluation_metrics,
    score_crops,
    video_probabilities,
    video_scores,
)
from training.tracking import start_tracked_run
from training.train import BEST_WEIGHTS, TrainConfig, config_from_args, get_args_parser, train


def default_folds(split: dict) -> list[list[str]]:
    """One fold per group with at least one face crop."""
    return [[group] for group in sorted({v["group"] for v in split["videos"] if v["crops"]})]


def parse_folds(text: str) -> list[list[str]]:
    """ "a;b;c,d" -> [["a"], ["b"], ["c", "d"]]."""
    return [
        [group.strip() for group in fold.split(",") if group.strip()] for fold in text.split(";")
    ]


def fold_split(split: dict, held_out: list[str]) -> dict:
    """The split with the held-out groups' videos as validation and every other as training."""
    unknown = sorted(set(held_out) - {v["group"] for v in split["videos"]})
    if unknown:
        raise SystemExit(f"crossval: no videos of group(s) {unknown} in the split")
    videos = [
        dict(video, split="val" if video["group"] in held_out else "train")
        for video in split["videos"]
    ]
    return dict(split, videos=videos)


@dataclass(frozen=True)
class ServedVideo:
    """A held-out video judged whole by its fold's checkpoint through the DetectorService."""

    label: int  # 1 = fake
    fake_probability: float  # the served rule's; NO_FACE_SCORE when no face was found
    mean_probability: float  # the mean over the same faces
    verdict_label: str


@dataclass
class FoldResult:
    crops: CropScores
    served: dict[str, ServedVideo]  # video id -> its served verdict


def run_fold(config: TrainConfig, split: dict, held_out: list[str], folder: Path) -> FoldResult:
    """Train on the other groups; the held-out crops' scores from the recipe's last epoch, and
    the held-out videos' served verdicts."""
    split_path = folder / "split.json"
    fold = fold_split(split, held_out)
    write_split(fold, split_path)
    fold_config = dataclasses.replace(
        config,
        split=str(split_path),
        image_dir=split["image_dir"],
        output_dir=str(folder / "checkpoints"),
        checkpoint_selection="last",
        calibration="none",  # its validation faces are the held-out people being measured
        registered_model=None,
        experiment=f"{config.experiment}-crossval",
        resume=False,
    )
    train(fold_config)
    checkpoint = folder / "checkpoints" / BEST_WEIGHTS
    network, settings = load_checkpoint(checkpoint)
    held_out_crops = FaceCrops(
        split_items(fold, "val", split["image_dir"], "videos"), settings, False
    )
    crops = score_crops(network, held_out_crops, config.eval_batch_size, "fp32")
    return FoldResult(crops, served_verdicts(checkpoint, fold))


def served_verdicts(checkpoint: Path, fold: dict) -> dict[str, ServedVideo]:
    """The fold's held-out videos through the server's DetectorService (default settings)."""
    service = DetectorService.from_checkpoint(checkpoint, ServiceConfig())
    videos = [video for video in fold["videos"] if video["split"] == "val"]
    outcomes = analyze_files([Path(video["video"]) for video in videos], service, progress=False)
    served = {}
    for video, outcome in zip(videos, outcomes, strict=True):
        if outcome.verdict is None:
            print(f"crossval: {video['video_id']} unreadable: {outcome.error}")
            continue
        judged = outcome.verdict
        mean = aggregate(judged.faces.frame_probabilities(), "mean")
        served[video["video_id"]] = ServedVideo(
            label=int(video["label"] == "fake"),
            fake_probability=(
                NO_FACE_SCORE if judged.fake_probability is None else judged.fake_probability
            ),
            mean_probability=NO_FACE_SCORE if mean is None else mean,
            verdict_label=judged.label,
        )
    return served


def served_metrics(served: dict[str, ServedVideo]) -> dict[str, float]:
    """Video AUC with bootstrap 95% intervals of the served rule and of the mean over the
    same faces, and how many videos the served verdict labels fake, real or uncertain."""
    labels = np.array([video.label for video in served.values()])
    metrics: dict[str, float] = {"served_videos": len(served)}
    for name, scores in (
        ("served_video_auc", [video.fake_probability for video in served.values()]),
        ("served_mean_video_auc", [video.mean_probability for video in served.values()]),
    ):
        if len(set(labels)) < 2:
            continue
        metrics[name] = float(roc_auc_score(labels, scores))
        metrics[f"{name}_low"], metrics[f"{name}_high"] = bootstrap_interval(
            labels, scores, roc_auc_score
        )
    for verdict_label in (FAKE, REAL, UNCERTAIN):
        metrics[f"served_{verdict_label}"] = sum(
            video.verdict_label == verdict_label for video in served.values()
        )
    return metrics


def pooled_scores(folds: list[CropScores]) -> CropScores:
    return CropScores(
        video_ids=[v for fold in folds for v in fold.video_ids],
        frame_indices=[f for fold in folds for f in fold.frame_indices],
        labels=np.concatenate([fold.labels for fold in folds]),
        probabilities=np.concatenate([fold.probabilities for fold in folds]),
        loss=float(np.mean([fold.loss for fold in folds])),
    )


def summary(scores: CropScores, aggregation: str) -> dict[str, float]:
    """Pooled metrics with bootstrap 95% intervals (`*_low`, `*_high`)."""
    metrics = evaluation_metrics(scores, aggregation)
    video_labels, per_video = video_scores(scores, aggregation)
    intervals = {
        "video_auc": bootstrap_interval(video_labels, per_video, roc_auc_score),
        "video_eer": bootstrap_interval(video_labels, per_video, equal_error_rate),
        "frame_auc": bootstrap_interval(
            scores.labels, scores.probabilities, roc_auc_score, clusters=scores.video_ids
        ),
    }
    for name, (low, high) in intervals.items():
        metrics[f"{name}_low"], metrics[f"{name}_high"] = low, high
    metrics["real_videos"] = int((video_labels == 0).sum())
    metrics["fake_videos"] = int((video_labels == 1).sum())
    return metrics


def calibration_metrics(folds: list[CropScores]) -> tuple[dict[str, float], np.ndarray]:
    """Face-level ECE of the pooled out-of-fold scores as trained, and after a temperature
    fitted on the *other* folds' scores (cross-fitted: no fold is calibrated on itself);
    `calibration_temperature` is the one fitted on every fold, a recipe's temperature (what
    its `recipe_temperature` should be). Also the cross-fitted probabilities, pooled."""
    calibrated = []
    for number, fold in enumerate(folds):
        others = [other for index, other in enumerate(folds) if index != number]
        fitted = fit_temperature(
            np.concatenate([o.probabilities for o in others]),
            np.concatenate([o.labels for o in others]),
        )
        calibrated.append(with_temperature(fold.probabilities, fitted.temperature))
    probabilities = np.concatenate([fold.probabilities for fold in folds])
    labels = np.concatenate([fold.labels for fold in folds])
    calibrated = np.concatenate(calibrated)
    metrics = {
        "face_ece": expected_calibration_error(probabilities, labels),
        "face_ece_calibrated": expected_calibration_error(calibrated, labels),
        "calibration_temperature": fit_temperature(probabilities, labels).temperature,
    }
    return metrics, calibrated


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--folds", help='groups held out per fold: "a;b;c,d" (default: each group)')
    parser.add_argument("--output", type=Path, default=Path("crossval.json"))
    parser.add_argument("--work-dir", type=Path, help="fold splits and checkpoints (default: temp)")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    split = load_split(Path(config.split))
    folds = parse_folds(args.folds) if args.folds else default_folds(split)
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = args.work_dir or Path(scratch)
        results = []
        for number, held_out in enumerate(folds):
            print(f"crossval: fold {number + 1}/{len(folds)}, holding out {held_out}")
            folder = work_dir / f"fold{number}"
            folder.mkdir(parents=True, exist_ok=True)
            results.append(run_fold(config, split, held_out, folder))
    fold_scores = [result.crops for result in results]
    served = {video_id: video for result in results for video_id, video in result.served.items()}
    pooled = pooled_scores(fold_scores)
    metrics = summary(pooled, config.aggregation)
    metrics.update(served_metrics(served))
    reliability = None
    try:
        calibration, calibrated = calibration_metrics(fold_scores)
        metrics.update(calibration)
        curves = {"as trained": pooled.probabilities, "cross-fitted temperature": calibrated}
        reliability = reliability_figure(pooled.labels, curves)
    except ValueError as error:  # a fold with faces of one class only
        print(f"crossval: calibration not measured: {error}")
    videos = video_probabilities(pooled, config.aggregation)
    report = {
        "config": dataclasses.asdict(config),
        "folds": folds,
        "metrics": metrics,
        "videos": {
            video_id: {"label": label, "fake_probability": p}
            for video_id, (label, p) in videos.items()
        },
        "served": {video_id: dataclasses.asdict(video) for video_id, video in served.items()},
    }
    args.output.write_text(json.dumps(report, indent=1))
    params = {
        "folds": json.dumps(folds),
        "config": args.config or "",
        **{
            k: v
            for k, v in dataclasses.asdict(config).items()
            if k in ("input_size", "epochs", "lr", "init")
        },
    }
    with start_tracked_run(f"{config.experiment}-crossval", None, params) as run:
        run.log_metrics(metrics, step=0)
        run.log_artifact(args.output, "crossval")
        if reliability is not None:
            run.log_figure(reliability, "plots/reliability.png")
    print(
        f"crossval: {metrics['real_videos']} real / {metrics['fake_videos']} fake videos; "
        f"video AUC {metrics['video_auc']:.3f} [{metrics['video_auc_low']:.3f}, "
        f"{metrics['video_auc_high']:.3f}], frame AUC {metrics['frame_auc']:.3f} "
        f"[{metrics['frame_auc_low']:.3f}, {metrics['frame_auc_high']:.3f}], video EER "
        f"{metrics['video_eer']:.3f} [{metrics['video_eer_low']:.3f}, "
        f"{metrics['video_eer_high']:.3f}]; served (person rule) video AUC "
        f"{metrics.get('served_video_auc', float('nan')):.3f} against "
        f"{metrics.get('served_mean_video_auc', float('nan')):.3f} for the mean; face ECE "
        f"{metrics.get('face_ece', float('nan')):.3f}"
        f" -> {metrics.get('face_ece_calibrated', float('nan')):.3f} cross-fitted (temperature "
        f"{metrics.get('calibration_temperature', float('nan')):.2f}); wrote {args.output}"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
