"""What the CPU can do natively, read from /proc/cpuinfo, and how many cores this process may
use (its CPU affinity, capped by its cgroup's CPU quota) (Linux)."""

from __future__ import annotations

import math
import os
import sys
from functools import lru_cache
from pathlib import Path

import cv2
import torch

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def first_processor(cpuinfo: str | None = None) -> dict[str, str]:
    """The first processor's fields of `cpuinfo` (by default /proc/cpuinfo; empty where it is
    unavailable)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor is enough
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The first processor's feature flags; empty where /proc/cpuinfo is unavailable."""
    return frozenset(first_processor().get("flags", "").split())


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name with its family and model numbers: virtual machines often show only
    "AMD EPYC", and EPYCs of families 25 and 26 differ twofold in bf16 matrix rate."""
    fields = first_processor(cpuinfo)
    name = fields.get("model name", "unknown CPU")
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def skip_triton_without_gpu() -> None:
    """Make `import triton` fail in a process that has no CUDA device. torchvision imports
    torch._dynamo, which imports triton (a GPU kernel compiler) only to learn whether it is
    installed: 100 MB more resident in every CPU worker (docs/performance.md) for kernels that
    never run there. Nothing in this project compiles kernels; with a GPU it stays importable."""
    if "triton" not in sys.modules and not torch.cuda.is_available():
        sys.modules["triton"] = None  # importlib's marker for "cannot be imported"


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True where bf16 matmuls run in hardware; elsewhere bf16 autocast is ~10x slower."""
    return bool(BF16_FLAGS & (cpu_flags() if flags is None else flags))


def limit_library_threads(threads: int) -> None:
    """Cap the thread pools that otherwise use every core in each process: torch's intra-op
    pool (crop normalization, the torch engines) and OpenCV's (resizing, colour conversion).
    A server worker passes its share of the cores so N workers do not oversubscribe them."""
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cores(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """Cores this process may run on: its CPU affinity, capped by its cgroup's CPU quota
    (a container or Kubernetes pod limited to 2 CPUs on a 64-core node counts 2, not 64)."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(root, proc_cgroup)
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs' worth of time per period the cgroups of this process allow (the tightest limit
    along its cgroup path, v2 `cpu.max` or v1 `cpu.cfs_quota_us`); None when unlimited."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: one hierarchy
            limits += [_v2_quota(folder) for folder in _path_up(root, path)]
        elif "cpu" in controllers.split(","):  # cgroup v1: the cpu controller's hierarchy
            limits += [_v1_quota(folder) for folder in _path_up(root / controllers, path)]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def _path_up(base: Path, path: str) -> list[Path]:
    """`base/path` and each parent folder up to `base`."""
    folder = base / path.strip("/")
    return [folder, *[parent for parent in folder.parents if parent.is_relative_to(base)]]


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period
