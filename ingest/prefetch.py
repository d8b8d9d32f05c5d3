"""Run an iterator in a background thread, a few items ahead of its consumer.

A video worker decodes (libavcodec) and then resizes, JPEG-encodes and computes saliency
(OpenCV, numpy, libjpeg): all of them release the GIL, so with decoding in its own thread the
two halves overlap and a worker keeps more than one core busy when the machine has cores spare
(1 worker on 2 cores). Order is kept, so output bytes do not change.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetched(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """``items`` produced in a thread, at most ``depth`` ahead; its exception is re-raised here, in
    order. Leaving early (the consumer failed) stops the producer and closes ``items``."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(entry: tuple[object, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for x in items:
                if not put((x, None)):
                    return
            put((_DONE, None))
        except BaseException as e:  # handed to the consumer, raised there
            put((_DONE, e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="headcam-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            x, err = q.get()
            if x is _DONE:
                if err is not None:
                    raise err
                return
            yield x
    finally:
        stop.set()
        thread.join()
