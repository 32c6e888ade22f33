"""The background producer behind overlapped decoding: order, errors, early stop, bounded lead."""

from __future__ import annotations

import threading
import time

import pytest

from model.prefetch import prefetch


def test_items_arrive_in_order_from_another_thread():
    producers: set[int] = set()

    def numbers():
        for number in range(50):
            producers.add(threading.get_ident())
            yield number

    assert list(prefetch(numbers(), depth=3)) == list(range(50))
    assert producers and threading.get_ident() not in producers


def test_a_producer_error_is_raised_where_the_consumer_reaches_it():
    def failing():
        yield 1
        yield 2
        raise ValueError("frame 3 is corrupt")

    received = []
    with pytest.raises(ValueError, match="frame 3 is corrupt"):
        for item in prefetch(failing(), depth=4):
            received.append(item)
    assert received == [1, 2]


def test_stopping_early_closes_the_producer_before_returning():
    produced, closed = [], threading.Event()

    def endless():
        try:
            number = 0
            while True:
                produced.append(number)
                yield number
                number += 1
        finally:
            closed.set()  # where a `with VideoReader(...)` block would close the video

    items = prefetch(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert closed.is_set()
    # Never more than depth items waiting, plus the one being handed over.
    assert len(produced) <= 3 + 2 + 1


def test_the_producer_runs_at_most_depth_items_ahead():
    produced = []

    def numbers():
        for number in range(20):
            produced.append(number)
            yield number

    items = prefetch(numbers(), depth=2)
    assert next(items) == 0
    time.sleep(0.3)  # time enough to run far ahead, if it could
    assert len(produced) <= 1 + 2 + 1
    assert list(items) == list(range(1, 20))


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        list(prefetch(iter([1]), depth=0))
