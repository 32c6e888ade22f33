"""Keep a long-running worker's memory close to what it uses (glibc's malloc, Linux)."""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
LARGE_BUFFER_BYTES = 1 << 20


def return_large_buffers_to_os(threshold: int = LARGE_BUFFER_BYTES) -> bool:
    """Have glibc give each allocation of `threshold` bytes or more its own mapping, returned to
    the OS when freed. By default glibc raises that threshold after the first such free (up to
    32 MB), so later decoded frames (6 MB at 1080p, 25 MB at 4K) come from the heap, whose
    high-water mark then stays. The price is a fresh mapping, and its page faults, for every
    large allocation: nothing measurable for OpenVINO, which reuses its buffers, but torch
    allocates each activation anew and runs slower (figures: docs/performance.md). False
    where the C library has no `mallopt` (not glibc)."""
    mallopt = _libc_function("mallopt")
    return mallopt is not None and mallopt(M_MMAP_THRESHOLD, threshold) == 1


def release_free_heap() -> bool:
    """Hand the heap's free pages back to the OS (glibc's `malloc_trim`). Starting a worker
    frees hundreds of MB it never needs again (loading the checkpoint, tracing the network into
    OpenVINO, timing the candidate paths), and malloc keeps those pages resident otherwise.
    False where the C library has none (not glibc) or nothing could be returned."""
    malloc_trim = _libc_function("malloc_trim")
    return malloc_trim is not None and malloc_trim(0) == 1


def _libc_function(name: str):
    """The C library's function `name`, or None where it has none (not glibc)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c")), name)
    except (OSError, AttributeError, TypeError):
        return None
