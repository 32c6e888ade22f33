"""What trains and how fast: the head's and the backbone's learning rates, and which of
Xception's top-level modules are frozen in an epoch."""

from __future__ import annotations

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
