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

import dataclasses
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from model.cpu import cpu_model
from model.device import device_name, resolve_precision
from model.network import (
    DEFAULT_CHECKPOINT,
    ModelSettings,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from model.schema import ConfigError
from training.calibration import calibrate, store_threshold
from training.data_dir import SplitError, check_crop_size, load_split
from training.dataset import (
    Collate,
    FaceCrops,
    TwinShuffle,
    no_face_videos,
    split_items,
    validation_items,
)
from training.distributed import ONE_PROCESS, Processes, start_processes, stop_processes, unwrap
from training.experiments import log_checkpoint_and_register, start_tracked_run
from training.loop import class_weights, steps_per_epoch, train_one_epoch
from training.optim import freeze, frozen_modules, parameter_groups
from training.plots import log_figures
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


def build_network(
    config: TrainConfig, crop_scale: float, processes: Processes
) -> tuple[nn.Module, ModelSettings]:
    """The network to train (from `config.init` when given) and the settings it will carry,
    on the device, frozen as the first epoch wants, wrapped for DDP where there is one."""
    # The server cuts faces at the scale the training crops were cut at, the split's.
    settings = ModelSettings(
        name=config.name,
        version=config.version,
        input_size=config.input_size,
        face_crop_scale=crop_scale,
    )
    network = build_model(settings)
    if config.init:
        initial, initial_settings = load_checkpoint(Path(config.init))
        network.load_state_dict(initial.state_dict())
        # The init checkpoint's face_crop_scale is not carried over: it describes the crops
        # that checkpoint saw, and where it differs from the split's the split wins, since
        # the new weights learn from (and will be served) crops cut at the split's scale.
        settings = dataclasses.replace(
            settings,
            mean=initial_settings.mean,
            std=initial_settings.std,
            init_source=initial_settings.init_source,
            init_sha256=initial_settings.init_sha256,
            init_licence=initial_settings.init_licence,
        )
    network = network.to(processes.device, memory_format=torch.channels_last)
    # Parameters that never train are left out of DDP; a head-only first epoch leaves the rest
    # without gradients for a while, which DDP must be told.
    freeze(network, frozen_modules(config, config.freeze_backbone_epochs))
    network = processes.wrap(network, find_unused_parameters=config.freeze_backbone_epochs > 0)
    return network, settings


def training_data(
    config: TrainConfig,
    split: dict,
    image_dir: str,
    settings: ModelSettings,
    processes: Processes,
    data_workers: int,
) -> tuple[FaceCrops, DataLoader, Sampler | None]:
    """The training crops, their loader and the sampler whose epoch must be set each epoch."""
    train_set = FaceCrops(
        split_items(split, "train", image_dir, config.fake_source),
        settings,
        train=True,
        seed=config.seed,
        augment_config=config.augment,
        blend_config=config.self_blend,
    )
    generator = torch.Generator().manual_seed(config.seed)
    shard_size = math.ceil(len(train_set) / processes.world_size)
    sampler = processes.sampler(train_set, config.seed, drop_last=False)
    if sampler is None and config.paired_batches:
        sampler = TwinShuffle(train_set.items, config.seed)
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=data_workers,
        pin_memory=processes.device.type == "cuda",  # copied to the GPU while it computes
        persistent_workers=data_workers > 0,
        collate_fn=Collate(settings),
        drop_last=shard_size > config.batch_size,
    )
    return train_set, train_loader, sampler


def train(config: TrainConfig, processes: Processes = ONE_PROCESS) -> nn.Module:
    """Train as `config` says; returns this process's trained network (identical on all)."""
    seed_everything(config.seed)
    split_path = Path(config.split)
    split = load_split(split_path)
    check_crop_size(split, config.input_size)  # crops are cut once, at the input size
    image_dir = config.image_dir or split["image_dir"]
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    precision = resolve_precision(config.precision, processes.device)
    data_workers = processes.data_workers(config.workers)

    network, settings = build_network(config, split["crop_scale"], processes)
    train_set, train_loader, sampler = training_data(
        config, split, image_dir, settings, processes, data_workers
    )
    val_set = FaceCrops(validation_items(split, image_dir), settings, train=False, seed=config.seed)
    if not len(val_set) and config.checkpoint_selection != "last":
        raise ConfigError(
            "the split has no validation crops; checkpoint_selection 'best' needs some "
            "(or train a recipe of fixed length with checkpoint_selection: last)"
        )
    loss_function = nn.CrossEntropyLoss(
        weight=class_weights(train_set.labels()).to(processes.device)
    )
    optimizer = torch.optim.AdamW(
        parameter_groups(network, config), lr=config.lr, weight_decay=config.weight_decay
    )
    total_steps = max(1, config.epochs * steps_per_epoch(train_loader, config.max_steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)

    scaler = torch.amp.GradScaler(processes.device.type, enabled=precision == "fp16")

    state_path = output_dir / LAST_STATE
    start_epoch, best, run_id = 0, None, None
    if config.resume and state_path.is_file():
        start_epoch, best, run_id = load_state(
            state_path, unwrap(network), optimizer, scheduler, scaler, processes.device
        )
        if processes.is_main:
            print(f"train: resuming after epoch {start_epoch - 1} of run {run_id}")

    params = {
        **dataclasses.asdict(config),
        "precision_used": precision,
        "cpu": cpu_model(),
        "train_crops": len(train_set),
        "train_fake_crops": int(train_set.labels().sum()),
        "val_crops": len(val_set),
        "torch_threads": torch.get_num_threads(),
        "device": device_name(processes.device),
        "data_workers": data_workers,
        "world_size": processes.world_size,
        "distributed_backend": processes.backend or "",
        "init_source": settings.init_source,
        "init_sha256": settings.init_sha256,
    }
    deadline = time.time() + config.time_budget_s if config.time_budget_s else None
    tracked = (
        start_tracked_run(config.experiment, run_id, params if run_id is None else None)
        if processes.is_main
        else nullcontext(None)
    )
    with tracked as run:
        best_metrics: dict[str, float] = {}
        best_scores: CropScores | None = None  # the kept checkpoint's validation scores
        for epoch in range(start_epoch, config.epochs):
            train_set.set_epoch(epoch)
            if sampler is not None:
                sampler.set_epoch(epoch)
            started = time.perf_counter()
            train_stats = train_one_epoch(
                network,
                train_loader,
                loss_function,
                optimizer,
                scheduler,
                precision,
                config.max_steps_per_epoch,
                deadline,
                epoch,
                processes,
                frozen=frozen_modules(config, epoch),
                scaler=scaler,
            )
            processes.average_buffers(network)
            out_of_time = bool(deadline) and processes.any(time.time() > deadline)
            if not processes.is_main:  # rank 0 validates, saves and logs; the others wait
                if out_of_time:
                    break
                continue
            scores = None
            metrics = {**train_stats, "lr": scheduler.get_last_lr()[0]}
            if len(val_set):
                scores = score_crops(
                    unwrap(network), val_set, config.eval_batch_size, precision, processes.device
                )
                validation = evaluation_metrics(
                    scores, config.aggregation, no_face_videos(split, "val")
                )
                metrics.update({f"val_{k}": v for k, v in validation.items()})
            metrics["epoch_seconds"] = time.perf_counter() - started
            run.log_metrics(metrics, step=epoch)
            candidate = _ranking(metrics) if scores is not None else (float(epoch),)
            if best is None or candidate > best or config.checkpoint_selection == "last":
                best, best_metrics, best_scores = candidate, metrics, scores
                save_checkpoint(unwrap(network), settings, output_dir / BEST_WEIGHTS)
                if scores is not None:
                    log_figures(run, scores, config.aggregation)
            save_state(
                state_path, unwrap(network), optimizer, scheduler, scaler, epoch, best, run.run_id
            )
            validated = (
                f"val video AUC {metrics['val_video_auc']:.3f} "
                f"frame AUC {metrics['val_frame_auc']:.3f} "
                if scores is not None
                else "no validation set "
            )
            print(
                f"train: epoch {epoch} loss {metrics['train_loss']:.4f} {validated}"
                f"({metrics['epoch_seconds']:.0f} s)"
            )
            if out_of_time:
                print("train: time budget reached")
                break
        processes.barrier()
        if not processes.is_main:
            return unwrap(network)
        finish_run(config, run, best_scores, best_metrics)
    return unwrap(network)


def finish_run(
    config: TrainConfig, run, scores: CropScores | None, metrics: dict[str, float]
) -> None:
    """After the last epoch: calibrate the kept checkpoint, store the recipe's threshold,
    log and register it. `scores` and `metrics`: the kept epoch's validation."""
    checkpoint = Path(config.output_dir) / BEST_WEIGHTS
    if config.calibration == "temperature":
        calibrate(checkpoint, scores, config.recipe_temperature, run)
    if config.recipe_threshold is not None:
        store_threshold(checkpoint, config.recipe_threshold, run)
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
