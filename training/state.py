"""What `training.train --resume` continues from: the network, optimiser, schedule and loss
scaler after an epoch, the weight average taken so far, the best ranking so far and the MLflow
run, in one file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

LAST_STATE = "last_state.pt"


def save_state(
    path: Path,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    epoch: int,
    best: tuple[float, ...],
    run_id: str,
    averaged: AveragedModel | None = None,
) -> None:
    torch.save(
        {
            "network": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "best": list(best),
            "run_id": run_id,
            "averaged": averaged.state_dict() if averaged is not None else None,
        },
        path,
    )


def load_state(
    path: Path,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    averaged: AveragedModel | None = None,
) -> tuple[int, tuple[float, ...] | None, str]:
    """Restore the objects in place (`averaged` too, where the state has one); returns (the
    first epoch to run, the best ranking so far, the MLflow run id)."""
    state = torch.load(path, map_location=device, weights_only=True)
    network.load_state_dict(state["network"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state.get("scaler", {}))
    if averaged is not None and state.get("averaged") is not None:
        averaged.load_state_dict(state["averaged"])
    best = tuple(state["best"]) if state["best"] is not None else None
    return state["epoch"] + 1, best, state["run_id"]
