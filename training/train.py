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

import argparse
import dataclasses
import math
import os
import random
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.cpu import cpu_model
from model.device import autocast, device_name, resolve_precision
from model.network import (
    DEFAULT_CHECKPOINT,
    ModelSettings,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from training.augment import AugmentConfig
from training.calibration import fit_temperature, reliability_figure, with_temperature
from training.data_dir import SplitError, check_crop_size, load_split
from training.dataset import FAKE_SOURCES, Collate, FaceCrops, TwinShuffle, split_items
from training.distributed import ONE_PROCESS, Processes, start_processes, stop_processes, unwrap
from training.experiments import log_checkpoint_and_register, start_tracked_run
from training.plots import confusion_figure, roc_figure
from training.sbi import SelfBlendConfig
from training.scoring import CropScores, evaluation_metrics, score_crops, video_scores

LAST_STATE = "last_state.pt"
BEST_WEIGHTS = DEFAULT_CHECKPOINT.name
CHECKPOINT_SELECTIONS = ("best", "last")
# pretrainedmodels' Xception, input to output (its ReLUs hold no weights).
XCEPTION_MODULES = (
    *("conv1", "bn1", "conv2", "bn2"),
    *(f"block{number}" for number in range(1, 13)),
    *("conv3", "bn3", "conv4", "bn4", "last_linear"),
)


@dataclass
class TrainConfig:
    """Defaults finish on a 2-core CPU; raise epochs and input size for a real dataset."""

    split: str = "images/split.json"
    image_dir: str | None = None  # default: the split file's image_dir
    output_dir: str = "checkpoints"
    name: str = "deepfake-xception"
    version: str = "0.1.0"
    input_size: int = 160
    epochs: int = 3
    batch_size: int = 16
    eval_batch_size: int = 32
    lr: float = 1e-3  # the head's; the backbone's is lr * backbone_lr_scale
    backbone_lr_scale: float = 1.0
    freeze_backbone_epochs: int = 0  # first epochs train the head alone
    # The first module that trains after those epochs; those before keep their ImageNet weights
    # (fewer weights to over-fit a few people with, and no backward pass through them).
    train_from: str = "conv1"
    weight_decay: float = 1e-2
    fake_source: str = "both"  # "videos", "sbi" (real videos only) or "both"
    # A real crop and its self-blended twin side by side in a batch (one process; torchrun
    # shards crops with DistributedSampler instead).
    paired_batches: bool = False
    max_steps_per_epoch: int | None = None
    time_budget_s: float | None = None  # stop training (then validate) when exceeded
    init: str | None = None  # checkpoint to start from (any of this project's format)
    resume: bool = False
    seed: int = 0
    # DataLoader processes decoding and self-blending crops. None: 0 on the CPU (they would
    # take cores from the network), on a GPU enough to keep it fed (data_workers).
    workers: int | None = None
    precision: str = "auto"  # "auto": bf16 only where the CPU has it natively
    aggregation: str = "mean"
    # "best": the epoch with the best validation ranking; "last": the last epoch, for a recipe
    # whose length was fixed by cross-validation (validation of a few videos is a weak guide).
    checkpoint_selection: str = "best"
    # "temperature": fit one on the kept checkpoint's validation faces (training/calibration.py)
    # and store it in the checkpoint; "none": leave the scores as trained (cross-validation
    # folds, whose validation faces are the held-out people being measured).
    calibration: str = "temperature"
    # With no validation split to fit one on: the temperature `make crossval` fitted on this
    # recipe's out-of-fold faces (its calibration_temperature), stored in the checkpoint.
    recipe_temperature: float | None = None
    # The served threshold `make crossval` fitted for this recipe on held-out people (its
    # fitted_threshold: false alarms at most 10%), stored in the checkpoint.
    recipe_threshold: float | None = None
    augment: dict | None = None  # AugmentConfig fields (YAML only)
    self_blend: dict | None = None  # SelfBlendConfig fields (YAML only)
    experiment: str = "deepfake-serve"
    registered_model: str | None = "deepfake"  # models:/deepfake/<version>


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="YAML file of TrainConfig fields")
    for field in dataclasses.fields(TrainConfig):
        if field.type == "dict | None":
            continue  # nested settings come from the YAML file
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            parser.add_argument(flag, action="store_true", default=None)
        else:
            kind = {"int": int, "float": float, "int | None": int, "float | None": float}
            parser.add_argument(flag, type=kind.get(field.type, str), default=None)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict = {}
    if args.config:
        values.update(yaml.safe_load(args.config.read_text()) or {})
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SystemExit(f"train: unknown keys in {args.config}: {unknown}")
    values.update({k: v for k, v in vars(args).items() if k in known and v is not None})
    config = TrainConfig(**values)
    if config.fake_source not in FAKE_SOURCES:
        raise SystemExit(f"train: --fake-source must be one of {FAKE_SOURCES}")
    if config.train_from not in XCEPTION_MODULES:
        raise SystemExit(f"train: train_from must be one of {XCEPTION_MODULES}")
    if config.calibration not in ("temperature", "none"):
        raise SystemExit(
            f"train: calibration must be temperature or none, got {config.calibration}"
        )
    if config.recipe_temperature is not None and config.recipe_temperature <= 0:
        raise SystemExit(f"train: recipe_temperature must be > 0, got {config.recipe_temperature}")
    if config.recipe_threshold is not None and not 0 <= config.recipe_threshold <= 1:
        raise SystemExit(
            f"train: recipe_threshold must lie in [0, 1], got {config.recipe_threshold}"
        )
    if config.checkpoint_selection not in CHECKPOINT_SELECTIONS:
        raise SystemExit(f"train: checkpoint_selection must be one of {CHECKPOINT_SELECTIONS}")
    for key, settings_class in (("augment", AugmentConfig), ("self_blend", SelfBlendConfig)):
        known = {field.name for field in dataclasses.fields(settings_class)}
        unknown = sorted(set(getattr(config, key) or {}) - known)
        if unknown:
            raise SystemExit(f"train: unknown keys under {key}: {unknown} (known: {sorted(known)})")
    return config


def augment_config(config: TrainConfig) -> AugmentConfig:
    return AugmentConfig(**_tuples(config.augment or {}))


def self_blend_config(config: TrainConfig) -> SelfBlendConfig:
    return SelfBlendConfig(**_tuples(config.self_blend or {}))


def _tuples(values: dict) -> dict:
    """YAML lists -> the tuples the frozen settings classes hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def is_head(parameter_name: str) -> bool:
    return parameter_name.removeprefix("module.").startswith("last_linear")


def parameter_groups(network: nn.Module, config: TrainConfig) -> list[dict]:
    """The head at `lr`, the backbone at `lr * backbone_lr_scale` (AdamW param groups)."""
    head, backbone = [], []
    for name, parameter in network.named_parameters():
        (head if is_head(name) else backbone).append(parameter)
    return [
        {"params": backbone, "lr": config.lr * config.backbone_lr_scale},
        {"params": head, "lr": config.lr},
    ]


def frozen_modules(config: TrainConfig, epoch: int) -> tuple[str, ...]:
    """Xception's top-level modules that do not train in `epoch`: everything but the head in
    the first `freeze_backbone_epochs`, else those before `train_from`."""
    if epoch < config.freeze_backbone_epochs:
        return XCEPTION_MODULES[:-1]
    return XCEPTION_MODULES[: XCEPTION_MODULES.index(config.train_from)]


def freeze(network: nn.Module, frozen: tuple[str, ...]) -> None:
    """Freeze the named top-level modules and thaw the rest. Frozen modules also keep their
    batch-norm statistics (eval mode), so they stay exactly as they were."""
    for name, module in unwrap(network).named_children():
        trainable = name not in frozen
        for parameter in module.parameters():
            parameter.requires_grad_(trainable)
        if not trainable:
            for layer in module.modules():
                if isinstance(layer, nn.BatchNorm2d):
                    layer.eval()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse class frequency, so real and fake count equally in the loss."""
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    if (counts == 0).any():
        raise SystemExit(f"train: the training set needs real and fake crops, got {counts}")
    return torch.tensor(counts.sum() / (2 * counts), dtype=torch.float32)


def train_one_epoch(
    network: nn.Module,
    loader: DataLoader,
    loss_function: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    precision: str,
    max_steps: int | None,
    deadline: float | None,
    epoch: int,
    processes: Processes = ONE_PROCESS,
    frozen: tuple[str, ...] = (),
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One pass over `loader`. `scaler` scales fp16 losses so small gradients do not vanish
    (bf16 and fp32 need none)."""
    scaler = scaler or torch.amp.GradScaler(processes.device.type, enabled=False)
    network.train()
    freeze(network, frozen)
    total_loss, seen, started = 0.0, 0, time.perf_counter()
    steps = _steps(loader, max_steps)
    quiet = not processes.is_main
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, total=steps, disable=quiet)
    for step, (batch, labels, _) in enumerate(bar):
        if step >= steps or (deadline and processes.any(time.time() > deadline)):
            break
        batch = batch.to(processes.device, memory_format=torch.channels_last, non_blocking=True)
        labels = labels.to(processes.device, non_blocking=True)
        with autocast(precision, processes.device.type):
            logits = network(batch)
        loss = loss_function(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total_loss += loss.item() * len(labels)
        seen += len(labels)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}")
    elapsed = time.perf_counter() - started
    total_loss, seen = processes.sum([total_loss, float(seen)])  # over all processes' shards
    return {
        "train_loss": total_loss / max(1, seen),
        "train_images_per_s": seen / elapsed if elapsed else 0.0,
        "train_images": int(seen),
    }


def _steps(loader: DataLoader, max_steps: int | None) -> int:
    return len(loader) if max_steps is None else min(len(loader), max_steps)


def validation_items(split: dict, image_dir: str):
    """Validation crops: the split's real fakes, or self-blended ones where it has none."""
    has_fakes = any(v["split"] == "val" and v["label"] == "fake" for v in split["videos"])
    return split_items(split, "val", image_dir, "videos" if has_fakes else "sbi")


def no_face_videos(split: dict, split_name: str) -> dict[str, int]:
    return {
        v["video_id"]: int(v["label"] == "fake")
        for v in split["videos"]
        if v["split"] == split_name and not v["crops"]
    }


def figures(scores: CropScores, aggregation: str, folder: Path) -> list[Path]:
    video_labels, video_probs = video_scores(scores, aggregation)
    return [
        roc_figure(
            {
                "frames": (scores.labels, scores.probabilities),
                "videos": (video_labels, video_probs),
            },
            folder / "roc.png",
        ),
        confusion_figure(
            video_labels, (video_probs >= 0.5).astype(int), folder / "confusion.png", "videos"
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    config = config_from_args(get_args_parser().parse_args(argv))
    processes = start_processes()
    try:
        train(config, processes)
    except SplitError as error:
        raise SystemExit(f"train: {error}") from error
    finally:
        stop_processes(processes)
    return 0


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

    # The server cuts faces at the scale the training crops were cut at, the split's.
    settings = ModelSettings(
        name=config.name,
        version=config.version,
        input_size=config.input_size,
        face_crop_scale=split["crop_scale"],
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

    train_set = FaceCrops(
        split_items(split, "train", image_dir, config.fake_source),
        settings,
        train=True,
        seed=config.seed,
        augment_config=augment_config(config),
        blend_config=self_blend_config(config),
    )
    val_set = FaceCrops(validation_items(split, image_dir), settings, train=False, seed=config.seed)
    if not len(val_set) and config.checkpoint_selection != "last":
        raise SystemExit(
            "train: the split has no validation crops; checkpoint_selection 'best' needs some "
            "(or train a recipe of fixed length with checkpoint_selection: last)"
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
    loss_function = nn.CrossEntropyLoss(
        weight=class_weights(train_set.labels()).to(processes.device)
    )
    optimizer = torch.optim.AdamW(
        parameter_groups(network, config), lr=config.lr, weight_decay=config.weight_decay
    )
    total_steps = max(1, config.epochs * _steps(train_loader, config.max_steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)

    scaler = torch.amp.GradScaler(processes.device.type, enabled=precision == "fp16")

    state_path = output_dir / LAST_STATE
    start_epoch, best, run_id = 0, None, None
    if config.resume and state_path.is_file():
        state = torch.load(state_path, map_location=processes.device, weights_only=True)
        unwrap(network).load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state.get("scaler", {}))
        start_epoch, run_id = state["epoch"] + 1, state["run_id"]
        best = tuple(state["best"]) if state["best"] is not None else None
        if processes.is_main:
            print(f"train: resuming after epoch {state['epoch']} of run {run_id}")

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
                    _log_figures(run, scores, config.aggregation)
            torch.save(
                {
                    "network": unwrap(network).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch,
                    "best": list(best),
                    "run_id": run.run_id,
                },
                state_path,
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
        if config.calibration == "temperature":
            calibrate(output_dir / BEST_WEIGHTS, best_scores, config.recipe_temperature, run)
        if config.recipe_threshold is not None:
            store_threshold(output_dir / BEST_WEIGHTS, config.recipe_threshold, run)
        version = log_checkpoint_and_register(
            run, output_dir / BEST_WEIGHTS, split_path, config.registered_model
        )
        summary = {k: best_metrics.get(k) for k in ("val_video_auc", "val_frame_auc", "val_loss")}
        kept = "the last epoch" if config.checkpoint_selection == "last" else f"best {summary}"
        print(
            f"train: kept {kept}, checkpoint {output_dir / BEST_WEIGHTS}, "
            f"MLflow run {run.run_id}" + (f", registered version {version}" if version else "")
        )
    return unwrap(network)


def _ranking(metrics: dict[str, float]) -> tuple[float, float, float]:
    """Higher is better: validation video AUC; ties (few videos) by frame AUC, then loss."""

    def known(value: float) -> float:
        return -math.inf if math.isnan(value) else value

    return known(metrics["val_video_auc"]), known(metrics["val_frame_auc"]), -metrics["val_loss"]


def calibrate(
    checkpoint: Path, scores: CropScores | None, recipe_temperature: float | None, run
) -> None:
    """Store a temperature in the checkpoint's settings: fitted on the kept checkpoint's
    validation faces (logged with the ECE before and after and a reliability plot), or,
    without validation faces, the recipe's from cross-validation."""
    if scores is not None:
        try:
            fitted = fit_temperature(scores.probabilities, scores.labels)
        except ValueError as error:
            print(f"train: not calibrated: {error}")
            return
        temperature, described = fitted.temperature, fitted.describe("validation")
        run.log_metrics(
            {"val_face_ece": fitted.ece_before, "val_face_ece_calibrated": fitted.ece_after},
            step=0,
        )
        curves = {
            "as trained": scores.probabilities,
            f"temperature {temperature:.2f}": with_temperature(scores.probabilities, temperature),
        }
        run.log_figure(reliability_figure(scores.labels, curves), "plots/reliability.png")
    elif recipe_temperature is not None:
        temperature = recipe_temperature
        described = (
            f"temperature {temperature:.3f} from cross-validating this recipe (make crossval: "
            "fitted on out-of-fold faces of held-out people, not on this model's)"
        )
    else:
        return
    network, settings = load_checkpoint(checkpoint)
    calibrated = dataclasses.replace(settings, temperature=temperature, calibration=described)
    save_checkpoint(network, calibrated, checkpoint)
    run.log_metrics({"calibration_temperature": temperature}, step=0)
    print(f"train: calibrated, {calibrated.calibration}")


def store_threshold(checkpoint: Path, threshold: float, run) -> None:
    """The recipe's served threshold, from cross-validation, in the checkpoint's settings."""
    network, settings = load_checkpoint(checkpoint)
    save_checkpoint(
        network, dataclasses.replace(settings, decision_threshold=threshold), checkpoint
    )
    run.log_metrics({"decision_threshold": threshold}, step=0)
    print(f"train: decision threshold {threshold} (the recipe's, from make crossval)")


def _log_figures(run, scores: CropScores, aggregation: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for path in figures(scores, aggregation, Path(folder)):
            run.log_artifact(path, "plots")


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
