"""One epoch of optimisation, and the loss weights it uses."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.device import autocast
from training.data_dir import SplitError
from training.distributed import ONE_PROCESS, Processes
from training.optim import freeze


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse class frequency, so real and fake count equally in the loss."""
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    if (counts == 0).any():
        raise SplitError(f"the training set needs real and fake crops, got {counts}")
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
    steps = steps_per_epoch(loader, max_steps)
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


def steps_per_epoch(loader: DataLoader, max_steps: int | None) -> int:
    return len(loader) if max_steps is None else min(len(loader), max_steps)
