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
Default folds: one per group that has faces (leave-one-identity-out).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from model.network import load_checkpoint
from training.calibration import expected_calibration_error, fit_temperature, with_temperature
from training.data_dir import load_split, write_split
from training.dataset import FaceCrops, split_items
from training.metrics import bootstrap_interval, equal_error_rate
from training.scoring import (
    CropScores,
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


def run_fold(config: TrainConfig, split: dict, held_out: list[str], folder: Path) -> CropScores:
    """Train on the other groups; the held-out crops' scores from the recipe's last epoch."""
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
    network, settings = load_checkpoint(folder / "checkpoints" / BEST_WEIGHTS)
    held_out_crops = FaceCrops(
        split_items(fold, "val", split["image_dir"], "videos"), settings, False
    )
    return score_crops(network, held_out_crops, config.eval_batch_size, "fp32")


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


def calibration_metrics(folds: list[CropScores]) -> dict[str, float]:
    """Face-level ECE of the pooled out-of-fold scores as trained, and after a temperature
    fitted on the *other* folds' scores (cross-fitted: no fold is calibrated on itself);
    `calibration_temperature` is the one fitted on every fold, a recipe's temperature."""
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
    return {
        "face_ece": expected_calibration_error(probabilities, labels),
        "face_ece_calibrated": expected_calibration_error(np.concatenate(calibrated), labels),
        "calibration_temperature": fit_temperature(probabilities, labels).temperature,
    }


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
        fold_scores = []
        for number, held_out in enumerate(folds):
            print(f"crossval: fold {number + 1}/{len(folds)}, holding out {held_out}")
            folder = work_dir / f"fold{number}"
            folder.mkdir(parents=True, exist_ok=True)
            fold_scores.append(run_fold(config, split, held_out, folder))
    pooled = pooled_scores(fold_scores)
    metrics = summary(pooled, config.aggregation)
    try:
        metrics.update(calibration_metrics(fold_scores))
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
    print(
        f"crossval: {metrics['real_videos']} real / {metrics['fake_videos']} fake videos; "
        f"video AUC {metrics['video_auc']:.3f} [{metrics['video_auc_low']:.3f}, "
        f"{metrics['video_auc_high']:.3f}], frame AUC {metrics['frame_auc']:.3f} "
        f"[{metrics['frame_auc_low']:.3f}, {metrics['frame_auc_high']:.3f}], video EER "
        f"{metrics['video_eer']:.3f} [{metrics['video_eer_low']:.3f}, "
        f"{metrics['video_eer_high']:.3f}]; face ECE {metrics.get('face_ece', float('nan')):.3f}"
        f" -> {metrics.get('face_ece_calibrated', float('nan')):.3f} cross-fitted (temperature "
        f"{metrics.get('calibration_temperature', float('nan')):.2f}); wrote {args.output}"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
