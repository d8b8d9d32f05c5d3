"""Worker processes that die with their parent, fed a bounded number of tasks at a time.

A SIGKILLed ingest (OOM killer, ``kill -9`` of the parent only) must not leave workers behind:
an orphan would keep writing into the staging area while the resumed run cleans it up. On Linux
each worker asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``); ``spawn``
keeps workers free of the parent's threads and open files.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1

#: CPU cores this process may keep busy: all of them outside a pool; in a pool worker, its share
#: (cores / workers, at least 1), set when the worker starts. Decoders size their threads by it.
_CPU_SHARE = os.cpu_count() or 1


def cpu_share() -> int:
    """Cores this process may use by itself (see ``_CPU_SHARE``)."""
    return _CPU_SHARE


def _init_worker(parent: int, workers: int) -> None:
    global _CPU_SHARE
    _CPU_SHARE = max(1, (os.cpu_count() or 1) // workers)
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)
    import cv2

    cv2.setNumThreads(1)  # the pool is the parallelism; OpenCV's own threads would only contend with it


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers are killed when this process dies."""
    return ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(), max(1, workers)))


class Workers:
    """One :func:`worker_pool` for a whole run, started on first use (starting costs ~1 s) and
    shared by its phases; after :meth:`close` (e.g. of a pool broken by a dying worker) the next use
    starts a fresh one."""

    def __init__(self, n: int):
        self.n = max(1, n)
        self._pool: ProcessPoolExecutor | None = None

    @property
    def started(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = worker_pool(self.n)
        return self._pool

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)


def in_flight(submit: Callable[[T], Future], items: Iterable[T], limit: int) -> Iterator[tuple[T, Future]]:
    """``(item, future)`` as futures finish, with at most ``limit`` submitted and unfinished.

    Items are pulled from ``items`` only when there is room, so a long input (the 100k images of
    STL-10's unlabeled split, read a chunk at a time) is never all in memory or in the pool's queue.
    """
    items = iter(items)
    pending: dict[Future, T] = {}

    def top_up() -> None:
        for item in itertools.islice(items, limit - len(pending)):
            pending[submit(item)] = item

    top_up()
    while pending:
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in finished:
            yield pending.pop(fut), fut
        top_up()
