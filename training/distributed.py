"""Multi-process training with DistributedDataParallel, started by torchrun.

    torchrun --nproc_per_node 2 -m training.train --split images/split.json

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them (plain `python -m training.train`)
everything here is a no-op for one process. CPU processes talk over gloo, GPU ones over NCCL.
Each process trains on its own shard of the crops (DistributedSampler), so the effective batch is
WORLD_SIZE x batch_size; gradients are averaged across processes at every step, which keeps
every process's weights identical. Rank 0 alone validates, writes checkpoints and logs to MLflow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

CPU = torch.device("cpu")
# Ranks other than 0 wait while rank 0 validates a whole epoch: give that time.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = CPU

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        if not self.distributed:
            return None
        return "nccl" if self.device.type == "cuda" else "gloo"

    def wrap(self, network: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """DDP around `network` (which must already be on `device`) when distributed."""
        if not self.distributed:
            return network
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            network, device_ids=ids, find_unused_parameters=find_unused_parameters
        )

    def sampler(self, dataset: Dataset, seed: int, drop_last: bool) -> DistributedSampler | None:
        """This rank's shuffled shard of `dataset`; None for one process (the loader shuffles)."""
        if not self.distributed:
            return None
        return DistributedSampler(
            dataset, self.world_size, self.rank, shuffle=True, seed=seed, drop_last=drop_last
        )

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any: stop decisions taken together, so no
        rank waits forever in a collective the others have left."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def sum(self, values: list[float]) -> list[float]:
        """`values` summed over all processes (each process passes its own)."""
        if not self.distributed:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.tolist()

    def average_buffers(self, network: nn.Module) -> None:
        """Average BatchNorm's running statistics over the processes. DDP keeps parameters equal
        but each process updates these from its own shard after rank 0's copy is broadcast at
        the start of a step; averaging makes every rank hold the same, better estimate."""
        if not self.distributed:
            return
        for buffer in unwrap(network).buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                buffer.div_(self.world_size)

    def data_workers(self, requested: int | None) -> int:
        """DataLoader processes: as configured; by default none on the CPU (they would take
        cores from the network) and, with CUDA, this process's share of the cores (at most
        8), leaving one for the training loop."""
        if requested is not None:
            return requested
        if self.device.type != "cuda":
            return 0
        per_process = len(os.sched_getaffinity(0)) // max(1, torch.cuda.device_count())
        return max(1, min(8, per_process - 1))

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


ONE_PROCESS = Processes()


def unwrap(network: nn.Module) -> nn.Module:
    """The model inside DDP (what checkpoints hold)."""
    return network.module if isinstance(network, DistributedDataParallel) else network


def start_processes() -> Processes:
    """Join the process group torchrun describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = CPU
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    processes = Processes(rank=rank, world_size=world_size, device=device)
    if processes.distributed and not dist.is_initialized():
        dist.init_process_group(processes.backend, timeout=COLLECTIVE_TIMEOUT)
    return processes


def stop_processes(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()
