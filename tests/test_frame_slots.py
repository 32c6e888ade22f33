"""Shared frame memory between the decoding child and the worker: sealed, bounded, copied out."""

from __future__ import annotations

import os

import numpy as np
import pytest

from model.frame_slots import FrameSlots


def test_a_frame_written_into_a_slot_is_read_back_as_a_copy():
    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    with FrameSlots.create(frame.nbytes, 2) as slots:
        slots.write(1, frame)
        copied = slots.read(1, 4, 6)
        slots.write(1, np.zeros_like(frame))  # the slot is reused at once
        np.testing.assert_array_equal(copied, frame)
        np.testing.assert_array_equal(slots.read(0, 4, 6), np.zeros_like(frame))


def test_the_other_side_maps_the_same_memory_through_the_descriptor():
    frame = np.full((2, 2, 3), 7, np.uint8)
    with FrameSlots.create(frame.nbytes, 2) as worker:
        child = FrameSlots(os.dup(worker.fd), frame.nbytes, 2)
        child.write(0, frame)
        child.close()
        np.testing.assert_array_equal(worker.read(0, 2, 2), frame)


def test_a_child_cannot_resize_the_memory_under_the_worker():
    with FrameSlots.create(12, 2) as slots:
        for size in (0, 12, 48):  # shrinking would end the worker with SIGBUS on its next read
            with pytest.raises(PermissionError):
                os.ftruncate(slots.fd, size)
        assert os.fstat(slots.fd).st_size == 24


@pytest.mark.parametrize(("slot", "height", "width"), [(2, 2, 2), (-1, 2, 2), (0, 3, 2)])
def test_a_slot_or_size_outside_the_memory_is_refused(slot, height, width):
    with FrameSlots.create(12, 2) as slots, pytest.raises(ValueError):
        slots.read(slot, height, width)


def test_memory_of_the_wrong_size_is_refused_before_it_is_mapped():
    fd = os.memfd_create("test")
    os.ftruncate(fd, 10)
    with pytest.raises(ValueError, match="10 bytes, not 24"):
        FrameSlots(fd, 12, 2)
    with pytest.raises(OSError):  # the descriptor was closed with the failure
        os.fstat(fd)
