"""Train the Xception detector on extracted face crops, tracked in MLflow.

    python -m training.train --split images/split.json [--config train.yaml] [--epochs 3] ...

Settings come from the `TrainConfig` defaults, then a YAML file (`--config`), then flags.
Every run is logged to MLflow (`MLFLOW_TRACKING_URI`, default `sqlite:///mlflow.db`): params,
per-epoch losses and validation metrics, the best checkpoint (by validation video AUC) with its
settings file, ROC and confusion-matrix figures and the split file; the best checkpoint is
registered as a new version of the model in the MLflow registry. `--resume` continues an
interrupted run (same MLflow run) from `OUTPUT_DIR/last_state.pt`.

    torchrun --nproc_per_node N -m training.train ...   # N processes, DistributedDataParallel

trains on N shards at once (training/distributed.py: gloo on CPU, NCCL on GPU); `batch_size` is
per process. Rank 0 alone validates, writes checkpoints and talks to MLflow.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.network import (
    DEFAULT_CHECKPOINT,
    save_checkpoint,
)
from model.schema import ConfigError
from training.calibration import calibrate, store_recipe_fits
from training.data_dir import SplitError
from training.dataset import (
    no_face_videos,
)
from training.distributed import ONE_PROCESS, Processes, start_processes, stop_processes, unwrap
from training.experiments import log_checkpoint_and_register, start_tracked_run
from training.loop import train_one_epoch
from training.optim import BudgetedCosine, frozen_modules, last_step_within
from training.plots import log_figures
from training.prepare import Training, prepare, run_params
from training.recipe import TrainConfig, config_from_args, get_args_parser
from training.scoring import CropScores, evaluation_metrics, score_crops
from training.state import LAST_STATE, load_state, save_state

BEST_WEIGHTS = DEFAULT_CHECKPOINT.name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser(__doc__.splitlines()[0])
    try:
        config = config_from_args(parser.parse_args(argv))
    except ConfigError as error:
        raise SystemExit(f"train: {error}") from error
    processes = start_processes()
    try:
        train(config, processes)
    except (ConfigError, SplitError) as error:
        raise SystemExit(f"train: {error}") from error
    finally:
        stop_processes(processes)
    return 0


@dataclass
class Kept:
    """The epoch kept as the checkpoint so far: its ranking, metrics and validation scores."""

    ranking: tuple[float, ...] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    scores: CropScores | None = None


def train(config: TrainConfig, processes: Processes = ONE_PROCESS) -> nn.Module:
    """Train as `config` says; returns this process's trained network (identical on all;
    the weight average where the recipe takes one)."""
    seed_everything(config.seed)
    training = prepare(config, processes)
    state_path = training.output_dir / LAST_STATE
    start_epoch, kept, run_id = 0, Kept(), None
    if config.resume and state_path.is_file():
        start_epoch, kept.ranking, run_id = load_state(
            state_path, unwrap(training.network), training.optimizer, training.scheduler,
            training.scaler, processes.device, training.averaged,
        )  # fmt: skip
        if processes.is_main:
            print(f"train: resuming after epoch {start_epoch - 1} of run {run_id}")
    deadline = time.time() + config.time_budget_s if config.time_budget_s else None
    params = run_params(config, training, processes) if run_id is None else None
    tracked = (
        start_tracked_run(config.experiment, run_id, params)
        if processes.is_main
        else nullcontext(None)
    )
    with tracked as run:
        for epoch in range(start_epoch, config.epochs):
            started, steps_before = time.perf_counter(), training.scheduler.last_epoch
            train_stats = train_epoch(config, training, epoch, deadline, processes)
            out_of_time = bool(deadline) and processes.any(time.time() > deadline)
            if processes.is_main:  # rank 0 validates, saves and logs; the others wait
                kept = end_epoch(config, training, run, epoch, train_stats, started, kept)
            if out_of_time:
                if processes.is_main:
                    print("train: time budget reached")
                break
            if deadline:
                seconds, seconds_left = time.perf_counter() - started, deadline - time.time()
                fit_schedule_to_budget(
                    training.scheduler, steps_before, seconds, seconds_left, processes
                )
            if training.scheduler.steps_left() == 0:
                break  # the schedule the budget brought forward has ended
        processes.barrier()
        if processes.is_main:
            finish_run(config, run, kept.scores, kept.metrics)
    return training.kept_network()


def fit_schedule_to_budget(
    scheduler: BudgetedCosine,
    steps_before: int,
    seconds: float,
    seconds_left: float,
    processes: Processes = ONE_PROCESS,
) -> None:
    """After an epoch that took `seconds` from step `steps_before`: when the steps left in
    the schedule will not fit in the `seconds_left` of the budget at that pace, its end comes
    forward so the learning rate still reaches zero when the budget stops training. Every
    process takes the same decision (the pace and time left averaged over them)."""
    steps = scheduler.last_epoch - steps_before
    if not steps:
        return
    pace, seconds_left, count = processes.sum([seconds / steps, seconds_left, 1.0])
    last_step = last_step_within(scheduler.last_epoch, pace / count, seconds_left / count)
    if last_step < scheduler.T_max and processes.is_main:
        print(
            f"train: {scheduler.T_max - scheduler.last_epoch} steps left will not fit the time "
            f"budget at {pace / count:.2f} s a step: the learning rate now reaches zero at step "
            f"{last_step} instead of {scheduler.T_max}"
        )
    scheduler.end_by(last_step)


def min_steps(*limits: int | None) -> int | None:
    """The tightest of the step limits that are set (None: none is)."""
    return min((limit for limit in limits if limit is not None), default=None)


def train_epoch(
    config: TrainConfig,
    training: Training,
    epoch: int,
    deadline: float | None,
    processes: Processes,
) -> dict[str, float]:
    training.train_set.set_epoch(epoch)
    averaging = epoch >= config.epochs - config.weight_average_epochs
    sharpening = config.sharpness_epochs is None or epoch >= config.epochs - config.sharpness_epochs
    if training.sampler is not None:
        training.sampler.set_epoch(epoch)
    stats = train_one_epoch(
        training.network,
        training.train_loader,
        training.loss_function,
        training.optimizer,
        training.scheduler,
        training.precision,
        min_steps(config.max_steps_per_epoch, training.scheduler.steps_left()),
        deadline,
        epoch,
        processes,
        frozen=frozen_modules(config, epoch),
        scaler=training.scaler,
        averaged=training.averaged if averaging else None,
        sharpness=training.sharpness if sharpening else None,
    )
    processes.average_buffers(training.network)
    return stats


def end_epoch(
    config: TrainConfig,
    training: Training,
    run,
    epoch: int,
    train_stats: dict[str, float],
    started: float,
    kept: Kept,
) -> Kept:
    """Rank 0 after an epoch: validate, log, keep the checkpoint if it ranks best (or always,
    for `checkpoint_selection: last`), save the resumable state. Returns what is kept."""
    network = training.kept_network()
    scores = None
    metrics = {**train_stats, "lr": training.scheduler.get_last_lr()[0]}
    if len(training.val_set):
        scores = score_crops(
            network, training.val_set, config.eval_batch_size, training.precision, training.device
        )
        validation = evaluation_metrics(
            scores, config.aggregation, no_face_videos(training.split, "val")
        )
        metrics.update({f"val_{k}": v for k, v in validation.items()})
    metrics["epoch_seconds"] = time.perf_counter() - started
    run.log_metrics(metrics, step=epoch)
    ranking = _ranking(metrics) if scores is not None else (float(epoch),)
    if kept.ranking is None or ranking > kept.ranking or config.checkpoint_selection == "last":
        kept = Kept(ranking, metrics, scores)
        save_checkpoint(network, training.settings, training.output_dir / BEST_WEIGHTS)
        if scores is not None:
            log_figures(run, scores, config.aggregation)
    save_state(
        training.output_dir / LAST_STATE, unwrap(training.network), training.optimizer,
        training.scheduler, training.scaler, epoch, kept.ranking, run.run_id, training.averaged,
    )  # fmt: skip
    validated = (
        f"val video AUC {metrics['val_video_auc']:.3f} frame AUC {metrics['val_frame_auc']:.3f} "
        if scores is not None
        else "no validation set "
    )
    print(
        f"train: epoch {epoch} loss {metrics['train_loss']:.4f} {validated}"
        f"({metrics['epoch_seconds']:.0f} s)"
    )
    return kept


def finish_run(
    config: TrainConfig, run, scores: CropScores | None, metrics: dict[str, float]
) -> None:
    """After the last epoch: calibrate the kept checkpoint, store the recipe's threshold,
    log and register it. `scores` and `metrics`: the kept epoch's validation."""
    checkpoint = Path(config.output_dir) / BEST_WEIGHTS
    if config.calibration == "temperature":
        calibrate(checkpoint, scores, config.recipe_temperature, run)
    store_recipe_fits(checkpoint, run, config.recipe_threshold, config.recipe_real_person_logit)
    version = log_checkpoint_and_register(
        run, checkpoint, Path(config.split), config.registered_model
    )
    summary = {k: metrics.get(k) for k in ("val_video_auc", "val_frame_auc", "val_loss")}
    kept = "the last epoch" if config.checkpoint_selection == "last" else f"best {summary}"
    print(
        f"train: kept {kept}, checkpoint {checkpoint}, "
        f"MLflow run {run.run_id}" + (f", registered version {version}" if version else "")
    )


def _ranking(metrics: dict[str, float]) -> tuple[float, float, float]:
    """Higher is better: validation video AUC; ties (few videos) by frame AUC, then loss."""

    def known(value: float) -> float:
        return -math.inf if math.isnan(value) else value

    return known(metrics["val_video_auc"]), known(metrics["val_frame_auc"]), -metrics["val_loss"]


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
