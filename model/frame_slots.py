"""Decoded frames handed from the sandbox's decoding child to the worker in shared memory.

A 4K frame is 25 MB; through a Unix socket (whose buffer the kernel caps near 200 KB) it takes
a hundred round trips, and the child cannot decode ahead while the worker reads. Instead the
worker makes a memfd of a few frame-sized slots, seals its size (so a child taken over by an
attacker cannot shrink it under the worker's mapping, which would end the worker with SIGBUS)
and passes it to the child. The child writes a frame into a free slot and says which; the
worker copies it out and hands the slot back. Only pixels can cross this way: the headers still
go through the socket, checked by the worker.
"""

from __future__ import annotations

import fcntl
import mmap
import os

import numpy as np

_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


class FrameSlots:
    """`count` slots of `frame_bytes` each, mapped from the memfd `fd` (which this owns)."""

    def __init__(self, fd: int, frame_bytes: int, count: int) -> None:
        self.fd, self.frame_bytes, self.count = fd, frame_bytes, count
        size = frame_bytes * count
        try:
            if os.fstat(fd).st_size != size:
                raise ValueError(f"the frame memory is {os.fstat(fd).st_size} bytes, not {size}")
            self._memory = mmap.mmap(fd, size)  # shared, read and write
        except BaseException:
            os.close(fd)
            raise
        self._pixels = np.frombuffer(self._memory, np.uint8)

    @classmethod
    def create(cls, frame_bytes: int, count: int) -> FrameSlots:
        """New sealed shared memory for `count` frames of `frame_bytes` (the worker's side)."""
        fd = os.memfd_create("deepfake-frames", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, frame_bytes * count)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, frame_bytes, count)

    def write(self, slot: int, rgb: np.ndarray) -> None:
        """Put one frame's pixels into `slot` (the child's side)."""
        np.copyto(self._slot(slot).reshape(rgb.shape), rgb)

    def read(self, slot: int, height: int, width: int) -> np.ndarray:
        """A copy of the (height, width, 3) frame in `slot`: the slot may be reused at once."""
        if height * width * 3 != self.frame_bytes:
            raise ValueError(f"a {width}x{height} frame does not fill a slot")
        return self._slot(slot).reshape(height, width, 3).copy()

    def close(self) -> None:
        del self._pixels  # the mapping cannot close while an array views it
        self._memory.close()
        os.close(self.fd)

    def __enter__(self) -> FrameSlots:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _slot(self, slot: int) -> np.ndarray:
        if not 0 <= slot < self.count:
            raise ValueError(f"no frame slot {slot} (there are {self.count})")
        return self._pixels[slot * self.frame_bytes : (slot + 1) * self.frame_bytes]
