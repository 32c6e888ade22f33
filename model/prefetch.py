"""Run a producer (an iterator) in a background thread, a few items ahead of its consumer.

The pipeline uses it twice: to decode the next sampled frame while HOG searches this one, and
to detect faces a few frames ahead while the network classifies the faces found so far. FFmpeg,
dlib, OpenCV and the inference engines release the GIL while they work, so the stages share the
cores instead of taking turns.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")

_DONE = object()  # the producer ran out


class _Failed:
    """The producer's exception, on its way to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_POLL_S = 0.05  # how often a blocked producer checks whether the consumer has gone


def prefetch(items: Iterable[Item], depth: int) -> Iterator[Item]:
    """Yield `items` in order, produced by a background thread at most `depth` items ahead
    (so memory holds at most `depth` of them). An exception in the producer is raised here, at
    the point the consumer reaches it; closing this generator early (the consumer failed or
    stopped) stops the producer and waits for it, so whatever it holds (an open video) is
    released before this returns."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            put(_Failed(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # a generator's `with` blocks run in this thread, now

    producer = threading.Thread(target=produce, name="prefetch", daemon=True)
    producer.start()
    try:
        while True:
            entry = handoff.get()
            if entry is _DONE:
                return
            if isinstance(entry, _Failed):
                raise entry.error
            yield entry
    finally:
        stop.set()
        producer.join()
