"""What trains and how fast: the head's and the backbone's learning rates, their schedule, and
which of Xception's top-level modules are frozen in an epoch."""

from __future__ import annotations

import math

import torch
from torch import nn

from model.network import XCEPTION_MODULES
from training.distributed import unwrap
from training.recipe import TrainConfig


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


class BudgetedCosine(torch.optim.lr_scheduler.CosineAnnealingLR):
    """Cosine annealing to zero over the planned steps (`T_max`), exactly as
    `CosineAnnealingLR`, until `end_by(step)` brings the end forward because a time budget will
    stop the run early: a run cut short on a slow CPU then still ends at a learning rate of zero
    instead of partway down the curve. From the step it is called at, the rate keeps to a cosine
    from where it is to zero at the new end (no jump), and stays at zero after it."""

    def __init__(self, optimizer: torch.optim.Optimizer, T_max: int) -> None:
        self.budget_end: int | None = None  # the end the budget brought forward, if it did
        super().__init__(optimizer, T_max=T_max)

    def end_by(self, last_step: int) -> None:
        if self.last_epoch < last_step < self.T_max:
            self.T_max = self.budget_end = last_step

    def steps_left(self) -> int | None:
        """Steps to the end the budget brought forward (None: it did not)."""
        return None if self.budget_end is None else max(0, self.budget_end - self.last_epoch)

    def get_lr(self) -> list[float]:
        if self.budget_end is not None and self.last_epoch >= self.budget_end:
            return [self.eta_min for _ in self.optimizer.param_groups]
        return super().get_lr()


def last_step_within(steps_done: int, seconds_per_step: float, seconds_left: float) -> int:
    """The last step a run that takes `seconds_per_step` can reach in `seconds_left`."""
    return steps_done + max(1, math.floor(seconds_left / seconds_per_step))
