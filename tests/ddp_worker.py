"""One torchrun process for tests/test_distributed_training.py: trains through training.train
and saves the weights this rank ends with, so the test can compare ranks.

    torchrun --standalone --nproc_per_node 2 -m tests.ddp_worker DUMP_DIR TRAIN_ARGS...
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from training.distributed import start_processes, stop_processes
from training.recipe import config_from_args, get_args_parser
from training.train import train


def main(argv: list[str]) -> int:
    dump_dir, train_args = Path(argv[0]), argv[1:]
    config = config_from_args(get_args_parser().parse_args(train_args))
    processes = start_processes()
    try:
        network = train(config, processes)
        torch.save(network.state_dict(), dump_dir / f"rank{processes.rank}.pt")
    finally:
        stop_processes(processes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
