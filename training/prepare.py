"""What one training run works with, built once before its first epoch: the network (from its
init checkpoint, frozen as the first epoch wants, wrapped for DDP), the training and validation
crops with their loader, the loss, optimiser, schedule and gradient scaler (`prepare`), and the
parameters MLflow records about the run (`run_params`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, Sampler

from model.cpu import cpu_model
from model.device import device_name, resolve_precision
from model.network import ModelSettings, build_model, load_checkpoint
from model.schema import ConfigError
from training.boundary import BoundaryHead
from training.data_dir import check_crop_size, check_fake_methods, load_split
from training.dataset import (
    Collate,
    FaceCrops,
    TwinShuffle,
    split_items,
    twin_indices,
    validation_items,
)
from training.distributed import Processes, unwrap
from training.loop import TrainingLoss, class_weights, steps_per_epoch
from training.optim import BudgetedCosine, freeze, frozen_modules, parameter_groups
from training.recipe import TrainConfig
from training.sharpness import SharpnessAware


@dataclass
class Training:
    """What one run trains with, built once by `prepare`."""

    split: dict
    output_dir: Path
    device: torch.device
    precision: str  # what the device runs: "fp32", "bf16" or "fp16"
    data_workers: int
    network: nn.Module  # DDP-wrapped where there is more than one process
    settings: ModelSettings
    train_set: FaceCrops
    train_loader: DataLoader
    sampler: Sampler | None  # its epoch is set every epoch
    val_set: FaceCrops
    loss_function: TrainingLoss
    optimizer: torch.optim.Optimizer
    scheduler: BudgetedCosine  # cosine to zero, its end brought forward by a time budget
    scaler: torch.amp.GradScaler
    # The running mean of the weights over the recipe's last `weight_average_epochs` (None:
    # no averaging); its module is what the run keeps once it has taken in a step.
    averaged: AveragedModel | None = None
    sharpness: SharpnessAware | None = None  # SAM's ascent, where the recipe asks for it

    def kept_network(self) -> nn.Module:
        """The weights an epoch's end validates and saves: the average once it has begun."""
        if self.averaged is not None and self.averaged.n_averaged > 0:
            return self.averaged.module
        return unwrap(self.network)


def prepare(config: TrainConfig, processes: Processes) -> Training:
    split = load_split(Path(config.split))
    check_crop_size(split, config.input_size)  # crops are cut once, at the input size
    check_fake_methods(split, config.fake_methods)
    image_dir = config.image_dir or split["image_dir"]
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data_workers = processes.data_workers(config.workers)
    network, settings = build_network(config, split["crop_scale"], processes)
    boundary = BoundaryHead(unwrap(network)) if config.boundary_loss else None
    train_set, train_loader, sampler = training_data(
        config, split, image_dir, settings, processes, data_workers
    )
    val_set = FaceCrops(validation_items(split, image_dir), settings, train=False, seed=config.seed)
    if not len(val_set) and config.checkpoint_selection != "last":
        raise ConfigError(
            "the split has no validation crops; checkpoint_selection 'best' needs some "
            "(or train a recipe of fixed length with checkpoint_selection: last)"
        )
    # The boundary head learns at the head's rate (`--resume` starts it afresh).
    head_groups = [{"params": list(boundary.parameters()), "lr": config.lr}] if boundary else []
    optimizer = torch.optim.AdamW(
        parameter_groups(network, config) + head_groups,
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    total_steps = max(1, config.epochs * steps_per_epoch(train_loader, config.max_steps_per_epoch))
    precision = resolve_precision(config.precision, processes.device)
    if config.sharpness_rho and precision == "fp16":
        raise ConfigError(
            "sharpness_rho with fp16: the loss scaler's scaled gradients would set SAM's step; "
            "train in bf16 or fp32 (precision)"
        )
    return Training(
        split=split,
        output_dir=output_dir,
        device=processes.device,
        precision=precision,
        data_workers=data_workers,
        network=network,
        settings=settings,
        train_set=train_set,
        train_loader=train_loader,
        sampler=sampler,
        val_set=val_set,
        loss_function=TrainingLoss(
            class_weights(train_set.labels()),
            twin_indices(train_set.items),
            config.twin_ranking,
            boundary,
            config.boundary_loss,
        ).to(processes.device),
        optimizer=optimizer,
        scheduler=BudgetedCosine(optimizer, T_max=total_steps),
        scaler=torch.amp.GradScaler(processes.device.type, enabled=precision == "fp16"),
        averaged=(
            AveragedModel(unwrap(network), use_buffers=True)
            if config.weight_average_epochs
            else None
        ),
        sharpness=(
            SharpnessAware(network.parameters(), config.sharpness_rho)
            if config.sharpness_rho
            else None
        ),
    )


def run_params(config: TrainConfig, training: Training, processes: Processes) -> dict:
    """What MLflow records about a new run: the recipe and where it ran."""
    return {
        **dataclasses.asdict(config),
        "precision_used": training.precision,
        "cpu": cpu_model(),
        "train_crops": len(training.train_set),
        "train_fake_crops": int(training.train_set.labels().sum()),
        "val_crops": len(training.val_set),
        "torch_threads": torch.get_num_threads(),
        "device": device_name(processes.device),
        "data_workers": training.data_workers,
        "world_size": processes.world_size,
        "distributed_backend": processes.backend or "",
        "init_source": training.settings.init_source,
        "init_sha256": training.settings.init_sha256,
    }


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
        split_items(split, "train", image_dir, config.fake_source, config.fake_methods),
        settings,
        train=True,
        seed=config.seed,
        augment_config=config.augment,
        blend_config=config.self_blend,
        boundary_targets=config.boundary_loss > 0,
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
