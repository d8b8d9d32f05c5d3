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


def _die_with_parent(parent: int) -> None:
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers are killed when this process dies."""
    return ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))


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
