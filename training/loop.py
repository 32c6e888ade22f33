"""One epoch of optimisation, and the loss weights it uses."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.device import autocast
from training.boundary import BoundaryHead
from training.data_dir import SplitError
from training.distributed import ONE_PROCESS, Processes, unwrap
from training.optim import freeze
from training.sharpness import SharpnessAware, batch_norm_statistics_kept


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse class frequency, so real and fake count equally in the loss."""
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    if (counts == 0).any():
        raise SplitError(f"the training set needs real and fake crops, got {counts}")
    return torch.tensor(counts.sum() / (2 * counts), dtype=torch.float32)


class TrainingLoss(nn.Module):
    """Class-weighted cross-entropy and, with `twin_weight` > 0, a ranking term on each real
    crop and its self-blended twin that share a batch: softplus(-(m_twin - m_real)), m being
    a crop's fake-minus-real logit. Cross-entropy judges each crop against a fixed line; the
    ranking term asks only that the blend score above the same face unblended, a question no
    identity can answer. Pairs come from `twins` (training.dataset.twin_indices) and the order
    TwinShuffle gives, so crops sharded by DistributedSampler get cross-entropy alone. With a
    `boundary` head, `boundary_weight` times its loss on the batch's boundary maps is added
    (Face X-ray's supervision, training/boundary.py)."""

    def __init__(
        self,
        class_weight: torch.Tensor,
        twins: np.ndarray,
        twin_weight: float,
        boundary: BoundaryHead | None = None,
        boundary_weight: float = 0.0,
    ):
        super().__init__()
        self.cross_entropy = nn.CrossEntropyLoss(weight=class_weight)
        self.register_buffer("twins", torch.as_tensor(twins, dtype=torch.int64))
        self.twin_weight = twin_weight
        # Face X-ray's boundary head (its weights train beside the network's, never saved).
        self.boundary, self.boundary_weight = boundary, boundary_weight

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
        boundaries: torch.Tensor | None = None,
    ) -> torch.Tensor:
        loss = self.cross_entropy(logits, labels)
        if self.boundary is not None and boundaries is not None:
            loss = loss + self.boundary_weight * self.boundary.loss(boundaries.to(logits.device))
        if self.twin_weight <= 0 or len(indices) < 2:
            return loss
        indices = indices.to(self.twins.device)
        real = torch.nonzero(self.twins[indices[:-1]] == indices[1:]).flatten()
        if not len(real):
            return loss
        margin = logits[:, 1] - logits[:, 0]
        ranking = functional.softplus(margin[real] - margin[real + 1]).mean()
        return loss + self.twin_weight * ranking


def train_one_epoch(
    network: nn.Module,
    loader: DataLoader,
    loss_function: TrainingLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    precision: str,
    max_steps: int | None,
    deadline: float | None,
    epoch: int,
    processes: Processes = ONE_PROCESS,
    frozen: tuple[str, ...] = (),
    scaler: torch.amp.GradScaler | None = None,
    averaged: AveragedModel | None = None,
    sharpness: SharpnessAware | None = None,
) -> dict[str, float]:
    """One pass over `loader`. `scaler` scales fp16 losses so small gradients do not vanish
    (bf16 and fp32 need none); `averaged` takes in the weights after every step; with
    `sharpness`, each step's gradient is taken at the worst nearby weights (SAM)."""
    scaler = scaler or torch.amp.GradScaler(processes.device.type, enabled=False)
    network.train()
    freeze(network, frozen)
    total_loss, seen, started = 0.0, 0, time.perf_counter()
    steps = steps_per_epoch(loader, max_steps)
    quiet = not processes.is_main
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, total=steps, disable=quiet)
    for step, (batch, labels, indices, *boundaries) in enumerate(bar):
        if step >= steps or (deadline and processes.any(time.time() > deadline)):
            break
        batch = batch.to(processes.device, memory_format=torch.channels_last, non_blocking=True)
        labels = labels.to(processes.device, non_blocking=True)
        loss = batch_loss(network, loss_function, precision, batch, labels, indices, *boundaries)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if sharpness is not None:
            sharpness.ascend()
            optimizer.zero_grad(set_to_none=True)
            with batch_norm_statistics_kept(network):
                batch_loss(
                    network, loss_function, precision, batch, labels, indices, *boundaries
                ).backward()
            sharpness.descend()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if averaged is not None:
            averaged.update_parameters(unwrap(network))
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


def batch_loss(
    network: nn.Module,
    loss_function: TrainingLoss,
    precision: str,
    batch: torch.Tensor,
    labels: torch.Tensor,
    indices: torch.Tensor,
    boundaries: torch.Tensor | None = None,
) -> torch.Tensor:
    with autocast(precision, batch.device.type):
        logits = network(batch)
    return loss_function(logits.float(), labels, indices, boundaries)


def steps_per_epoch(loader: DataLoader, max_steps: int | None) -> int:
    return len(loader) if max_steps is None else min(len(loader), max_steps)
