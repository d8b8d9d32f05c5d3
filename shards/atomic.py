"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Write to a temporary name in the same directory, fsync, rename, fsync the directory. A killed
writer leaves only ``*.tmp-*`` files, which :func:`remove_stale_temps` clears on the next run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from headcam.console import UsageError

TMP_MARK = ".tmp-"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", sync_dir: bool = True) -> Iterator[IO]:
    """Open ``path`` for writing atomically; on an exception the target is left untouched.

    ``sync_dir=False`` skips making the rename itself durable (one fsync fewer): for files whose
    existence is checked again before use, so a rename lost in a power cut only means redoing them.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    f = open(tmp, mode)  # noqa: SIM115 - closed below on every path
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
        if sync_dir:
            fsync_dir(path.parent)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, sync_dir: bool = True) -> None:
    with atomic_open(path, "wb", sync_dir) as f:
        f.write(data)


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Delete temp files left by a killed writer; returns what was removed."""
    removed = []
    for p in Path(directory).glob(f"*{TMP_MARK}*"):
        if p.is_file():
            p.unlink()
            removed.append(p)
    return removed


def prepare_out_dir(out: Path) -> None:
    """Create ``out`` and prove it is writable now, or raise a one-line :class:`UsageError`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test{TMP_MARK}{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to output directory {out}: {e.strerror or e}") from None
