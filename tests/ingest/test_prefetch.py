"""ingest/prefetch.py: the background decode thread keeps order, re-raises, and stops early."""

from __future__ import annotations

import threading

import pytest

from headcam.ingest.prefetch import prefetched


def test_order_and_exception_kept() -> None:
    def gen():
        yield from range(10)
        raise ValueError("boom")

    got = []
    with pytest.raises(ValueError, match="boom"):
        for x in prefetched(gen(), depth=2):
            got.append(x)
    assert got == list(range(10))


def test_consumer_leaving_early_stops_and_closes_the_producer() -> None:
    closed = threading.Event()

    def gen():
        try:
            yield from range(10_000)
        finally:
            closed.set()

    it = prefetched(gen(), depth=2)
    assert next(it) == 0
    it.close()
    assert closed.wait(5)
    assert not any(t.name == "headcam-prefetch" for t in threading.enumerate())
