"""What the CPU can do natively, read from /proc/cpuinfo (Linux)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import torch

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The first processor's feature flags; empty where /proc/cpuinfo is unavailable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True where bf16 matmuls run in hardware; elsewhere bf16 autocast is ~10x slower."""
    return bool(BF16_FLAGS & (cpu_flags() if flags is None else flags))


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(requested: str) -> str:
    """ "auto" becomes "bf16" on CPUs with native bf16 and "fp32" elsewhere."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested == "auto":
        return "bf16" if has_native_bf16() else "fp32"
    return requested


def autocast(precision: str) -> torch.autocast:
    """CPU autocast to bf16 when `precision` is "bf16"; a no-op context for "fp32"."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def limit_library_threads(threads: int) -> None:
    """Cap the thread pools that otherwise use every core in each process: torch's intra-op
    pool (crop normalization, the torch engines) and OpenCV's (resizing, colour conversion).
    A server worker passes its share of the cores so N workers do not oversubscribe them."""
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
