"""Cross-validate a training recipe by identity: train without some people, score them.

    python -m training.crossval --split images/224/all.json --config training/demo.yaml \
        [--fold-count 5 | --folds "a;b;c,d"] [--work-dir crossval-work]

Protocol v2 (docs/training.md "The evaluation protocol"): each fold holds out the videos of
some identity groups, trains the recipe on the rest exactly as `training.train` would, and
scores the held-out crops with the recipe's last epoch. When every fold is trained, each fold's
checkpoint gets the temperature fitted on the *other* folds' face scores (cross-fitted), and
judges its held-out videos whole through the server's `DetectorService` (people linked, the
served rule, threshold and uncertain band): video AUC overall, per swap method and per CRF,
the paired rate, the false-alarm rate, ECE and stability, each with a bootstrap 95% interval
(training/heldout.py). Logged as one MLflow summary run beside the folds' training runs and
written to `--output`. Default folds: `protocol_folds` (five, balanced, no seed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from model.config import ServiceConfig, load_config
from model.network import load_checkpoint, save_checkpoint
from model.schema import add_arguments, from_arguments
from model.service import DetectorService
from model.verdict import VideoVerdict, counted_people, verdict
from training.calibration import (
    expected_calibration_error,
    fit_real_person_logit,
    fit_temperature,
    reliability_figure,
    with_temperature,
)
from training.data_dir import load_split, write_split
from training.dataset import FaceCrops, split_items
from training.experiments import start_tracked_run
from training.folds import PROTOCOL_FOLDS, fold_split, parse_folds, protocol_folds
from training.heldout import ServedVideo, format_metrics, served_metrics, served_video
from training.metrics import bootstrap_interval, equal_error_rate, rank_auc
from training.recipe import TrainConfig, config_from_args, get_args_parser
from training.scoring import (
    CropScores,
    analyze_files,
    evaluation_metrics,
    score_crops,
    video_probabilities,
    video_scores,
)
from training.train import BEST_WEIGHTS, train


@dataclass
class FoldResult:
    held_out: list[str]
    split: dict  # the fold's split: its held-out videos are "val"
    checkpoint: Path  # the recipe's last epoch, uncalibrated
    crops: CropScores  # the held-out crops' scores


def run_fold(
    config: TrainConfig, split: dict, held_out: list[str], folder: Path, reuse: bool = False
) -> FoldResult:
    """Train on the other groups (or, with `reuse`, take the fold's checkpoint a run before
    trained in `folder`); the held-out crops' scores from the recipe's last epoch."""
    split_path = folder / "split.json"
    fold = fold_split(split, held_out)
    checkpoint = folder / "checkpoints" / BEST_WEIGHTS
    if reuse:
        trained = checkpoint.is_file() and split_path.is_file()
        if not trained or held_out_ids(load_split(split_path)) != held_out_ids(fold):
            raise ValueError(
                f"{folder} holds no checkpoint trained on this fold (holding out {held_out}): "
                "run the protocol there without --reuse-folds first"
            )
        return held_out_scores(config, fold, held_out, checkpoint)
    write_split(fold, split_path)
    fold_config = dataclasses.replace(
        config,
        split=str(split_path),
        image_dir=split["image_dir"],
        output_dir=str(folder / "checkpoints"),
        checkpoint_selection="last",
        calibration="none",  # its validation faces are the held-out people being measured
        recipe_threshold=None,  # the protocol labels at the default and fits the threshold
        recipe_real_person_logit=None,  # cross-fitted on the other folds' served people instead
        registered_model=None,
        experiment=f"{config.experiment}-crossval",
        resume=False,
    )
    train(fold_config)
    return held_out_scores(config, fold, held_out, checkpoint)


def held_out_ids(fold: dict) -> set[str]:
    return {video["video_id"] for video in fold["videos"] if video["split"] == "val"}


def held_out_scores(
    config: TrainConfig, fold: dict, held_out: list[str], checkpoint: Path
) -> FoldResult:
    network, settings = load_checkpoint(checkpoint)
    held_out_crops = FaceCrops(
        split_items(fold, "val", fold["image_dir"], "videos"), settings, False
    )
    crops = score_crops(network, held_out_crops, config.eval_batch_size, "fp32")
    return FoldResult(held_out, fold, checkpoint, crops)


def served_verdicts(
    fold: FoldResult, temperature: float, server: ServiceConfig
) -> list[tuple[dict, VideoVerdict]]:
    """The fold's held-out videos through the server's DetectorService (`server`: the
    server's default settings unless a serving lever is measured),
    its checkpoint calibrated with `temperature` (fitted on the other folds); no crowd
    correction yet (its null is fitted on the other folds' served people: `judge_crowds`)."""
    network, settings = load_checkpoint(fold.checkpoint)
    calibrated = fold.checkpoint.with_name("cross-fitted.pt")
    described = f"temperature {temperature:.3f} cross-fitted on the other folds' faces"
    save_checkpoint(
        network,
        dataclasses.replace(settings, temperature=temperature, calibration=described),
        calibrated,
    )
    service = DetectorService.from_checkpoint(calibrated, server)
    videos = [video for video in fold.split["videos"] if video["split"] == "val"]
    outcomes = analyze_files([Path(video["video"]) for video in videos], service, progress=False)
    served = []
    for video, outcome in zip(videos, outcomes, strict=True):
        if outcome.verdict is None:
            print(f"crossval: {video['video_id']} unreadable: {outcome.error}")
            continue
        served.append((video, outcome.verdict))
    return served


def real_people(folds: list[list[tuple[dict, VideoVerdict]]]) -> np.ndarray:
    """The person probabilities of the people the served rule counted in real videos."""
    return np.array(
        [
            person.fake_probability
            for fold in folds
            for video, judged in fold
            if video["label"] == "real"
            for person in counted_people(judged.people, judged.config)
        ]
    )


def real_person_null(folds: list[list[tuple[dict, VideoVerdict]]]) -> tuple[float, float] | None:
    """Real people's person-score null from these folds, or None (no correction) with too few."""
    try:
        return fit_real_person_logit(real_people(folds))
    except ValueError as error:
        print(f"crossval: no crowd correction: {error}")
        return None


def judge_crowds(
    folds: list[list[tuple[dict, VideoVerdict]]], server: ServiceConfig
) -> tuple[list[ServedVideo], list[tuple[float, float] | None]]:
    """Each fold's verdicts again with the crowd correction the server applies, its real
    people's null fitted on the *other* folds' served real people (cross-fitted, as the
    temperature is); the served videos and each fold's null."""
    videos, nulls = [], []
    for number, fold in enumerate(folds):
        null = real_person_null(folds[:number] + folds[number + 1 :])
        nulls.append(null)
        for video, judged in fold:
            people = [person.person for person in judged.people]
            again = verdict(judged.faces, judged.config, people, server.people, null)
            videos.append(served_video(video, again))
    return videos, nulls


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
        "video_auc": bootstrap_interval(video_labels, per_video, rank_auc),
        "video_eer": bootstrap_interval(video_labels, per_video, equal_error_rate),
        "frame_auc": bootstrap_interval(
            scores.labels, scores.probabilities, rank_auc, clusters=scores.video_ids
        ),
    }
    for name, (low, high) in intervals.items():
        metrics[f"{name}_low"], metrics[f"{name}_high"] = low, high
    metrics["real_videos"] = int((video_labels == 0).sum())
    metrics["fake_videos"] = int((video_labels == 1).sum())
    return metrics


@dataclass
class CrossFitted:
    temperatures: list[float]  # per fold, fitted on the other folds' faces
    metrics: dict[str, float]
    probabilities: np.ndarray  # the pooled faces, each fold with its cross-fitted temperature


def cross_fit(folds: list[CropScores]) -> CrossFitted:
    """Face-level ECE of the pooled out-of-fold scores as trained, and with each fold's
    temperature fitted on the *other* folds' scores (no fold is calibrated on itself);
    `calibration_temperature` is the one fitted on every fold: the recipe's."""
    temperatures, calibrated = [], []
    for number, fold in enumerate(folds):
        others = [other for index, other in enumerate(folds) if index != number]
        fitted = fit_temperature(
            np.concatenate([o.probabilities for o in others]),
            np.concatenate([o.labels for o in others]),
        )
        temperatures.append(fitted.temperature)
        calibrated.append(with_temperature(fold.probabilities, fitted.temperature))
    probabilities = np.concatenate([fold.probabilities for fold in folds])
    labels = np.concatenate([fold.labels for fold in folds])
    calibrated = np.concatenate(calibrated)
    metrics = {
        "face_ece": expected_calibration_error(probabilities, labels),
        "face_ece_calibrated": expected_calibration_error(calibrated, labels),
        "calibration_temperature": fit_temperature(probabilities, labels).temperature,
    }
    return CrossFitted(temperatures, metrics, calibrated)


@dataclass
class ProtocolRun:
    folds: list[FoldResult]
    served: list[ServedVideo]
    cross_fitted: CrossFitted | None  # None when a fold's faces are of one class only
    fold_real_person_logits: list[tuple[float, float] | None]  # each from the other folds
    real_person_logit: tuple[float, float] | None  # fitted on every fold: the recipe's


def run_protocol(
    config: TrainConfig,
    split: dict,
    folds: list[list[str]],
    work_dir: Path,
    server: ServiceConfig | None = None,
    reuse: bool = False,
) -> ProtocolRun:
    """Train every fold (or reuse what a run before trained in `work_dir`), cross-fit their
    temperatures, then judge the held-out videos as a server with `server`'s settings would
    (none: the server's defaults)."""
    server = server or ServiceConfig()
    results = []
    for number, held_out in enumerate(folds):
        print(f"crossval: fold {number + 1}/{len(folds)}, holding out {held_out}")
        folder = work_dir / f"fold{number}"
        folder.mkdir(parents=True, exist_ok=True)
        results.append(run_fold(config, split, held_out, folder, reuse))
    try:
        cross_fitted = cross_fit([result.crops for result in results])
        temperatures = cross_fitted.temperatures
    except ValueError as error:  # a fold with faces of one class only
        print(f"crossval: not calibrated: {error}")
        cross_fitted, temperatures = None, [1.0] * len(results)
    judged = [
        served_verdicts(result, temperature, server)
        for result, temperature in zip(results, temperatures, strict=True)
    ]
    videos, nulls = judge_crowds(judged, server)
    return ProtocolRun(results, videos, cross_fitted, nulls, real_person_null(judged))


def protocol_report(config: TrainConfig, run: ProtocolRun) -> dict:
    """crossval.json: the folds, every measure, each held-out video's crop and served scores."""
    pooled = pooled_scores([fold.crops for fold in run.folds])
    metrics = summary(pooled, config.aggregation)
    metrics.update(served_metrics(run.served))
    if run.cross_fitted is not None:
        metrics.update(run.cross_fitted.metrics)
    if run.real_person_logit is not None:
        mean, spread = run.real_person_logit
        metrics["real_person_logit_mean"], metrics["real_person_logit_spread"] = mean, spread
    videos = video_probabilities(pooled, config.aggregation)
    return {
        "protocol": 2,
        "config": dataclasses.asdict(config),
        "folds": [fold.held_out for fold in run.folds],
        "fold_temperatures": run.cross_fitted.temperatures if run.cross_fitted else None,
        "fold_real_person_logits": run.fold_real_person_logits,
        "metrics": metrics,
        "videos": {
            video_id: {"label": label, "fake_probability": p}
            for video_id, (label, p) in videos.items()
        },
        "served": {video.video_id: dataclasses.asdict(video) for video in run.served},
    }


def log_summary(config: TrainConfig, run: ProtocolRun, report: dict, output: Path) -> None:
    """One MLflow run per protocol run: its metrics, crossval.json, the reliability plot."""
    params = {
        "protocol": 2,
        "folds": json.dumps(report["folds"]),
        **{
            k: v
            for k, v in dataclasses.asdict(config).items()
            if k in ("name", "version", "input_size", "epochs", "lr", "init")
        },
    }
    with start_tracked_run(f"{config.experiment}-crossval", None, params) as tracked:
        tracked.log_metrics(report["metrics"], step=0)
        tracked.log_artifact(output, "crossval")
        if run.cross_fitted is not None:
            pooled = pooled_scores([fold.crops for fold in run.folds])
            curves = {
                "as trained": pooled.probabilities,
                "cross-fitted temperature": run.cross_fitted.probabilities,
            }
            tracked.log_figure(reliability_figure(pooled.labels, curves), "plots/reliability.png")


@dataclass(frozen=True)
class ProtocolOptions:
    """`python -m training.crossval`'s settings besides the recipe's, a flag per field."""

    folds: str | None = field(
        default=None, metadata={"help": 'groups held out per fold: "a;b;c,d"'}
    )
    fold_count: int = field(
        default=PROTOCOL_FOLDS, metadata={"help": "folds when --folds is not given"}
    )
    output: Path = Path("crossval.json")
    work_dir: Path | None = field(
        default=None, metadata={"help": "fold splits and checkpoints; none: a temporary folder"}
    )
    reuse_folds: bool = field(
        default=False,
        metadata={"help": "judge the fold checkpoints a run before trained in --work-dir "
                  "(no training): to measure a serving setting"},
    )  # fmt: skip
    served_config: Path | None = field(
        default=None,
        metadata={"help": "a model config YAML whose `deepfake:` block the held-out videos are "
                  "served with (docs/configuration.md); none: the server's defaults"},
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser(__doc__.splitlines()[0])
    add_arguments(parser, ProtocolOptions)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        options = from_arguments(args, ProtocolOptions)
        split = load_split(Path(config.split))
        folds = (
            parse_folds(options.folds)
            if options.folds
            else protocol_folds(split, options.fold_count)
        )
        for held_out in folds:
            fold_split(split, held_out)  # an unknown group fails before any training
        if options.reuse_folds and options.work_dir is None:
            raise ValueError("--reuse-folds judges the checkpoints in --work-dir: name it")
        served_yaml = {}
        if options.served_config:
            served_yaml = yaml.safe_load(options.served_config.read_text())
        server = load_config(served_yaml)
    except (ValueError, OSError, yaml.YAMLError) as error:
        print(f"crossval: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = options.work_dir or Path(scratch)
        try:
            run = run_protocol(config, split, folds, work_dir, server, options.reuse_folds)
        except ValueError as error:
            print(f"crossval: {error}", file=sys.stderr)
            return 2
    report = protocol_report(config, run)
    report["served_settings"] = (served_yaml or {}).get("deepfake") or {}  # besides the defaults
    options.output.write_text(json.dumps(report, indent=1))
    log_summary(config, run, report, options.output)
    print(f"crossval (protocol v2), {len(folds)} folds; wrote {options.output}")
    print(format_metrics(report["metrics"]))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
