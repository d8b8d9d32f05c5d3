"""Worker processes that die with their parent.

A SIGKILLed ingest (OOM killer, ``kill -9`` of the parent only) must not leave workers behind:
an orphan would keep writing into the staging area while the resumed run cleans it up. On Linux
each worker asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``); ``spawn``
keeps workers free of the parent's threads and open files.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor

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
