"""The files of a staged unit: written by workers in phase 1, copied into shards in phase 2, freed as they go.

Worker-side code of the engine (:mod:`headcam.ingest.engine`), kept free of pyarrow and of the
parent's bookkeeping so a spawned worker starts fast. A unit is ``<key>.tar`` (its encoded
members, laid out as tar members so any one is read with a seek) and ``<key>.json`` (its
samples and their members' byte ranges); both are written atomically (data fsynced), so a
killed worker leaves only temp files. Their renames are not fsynced: the unit journal record,
appended after them, is durable, and a unit whose files a power cut lost is staged again
(:meth:`headcam.ingest.engine.Staging.is_staged`).

Phase 2 frees a sample's staged bytes once the shard holding it is journaled (:func:`punch`, used by
:mod:`headcam.ingest.merge`), so staging and output together stay near the dataset's size.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headcam.shards.atomic import atomic_open, atomic_write_bytes
from headcam.shards.writer import Sample, SampleBlock, member_header, sample_block, write_blocks

_BLOCK = 512


class OutputError(Exception):
    """Writing the output failed (disk full, quota, file-size limit, read-only): the run stops, since
    every other file would fail the same way; nothing is journaled, so re-running resumes."""


def output_error(where: str | Path, e: OSError) -> OutputError:
    return OutputError(f"cannot write to {where}: {e.strerror or e} (errno {e.errno}); fix that (e.g. free space) "
                       "and run the same command again to resume")


# ---------------------------------------------------------------------------------------------
# Phase 1: a unit's files


class StagedTar:
    """``<unit>.tar`` of a unit's encoded members, written atomically; :meth:`add` returns the
    ``[offset, size]`` of a member's bytes, so phase 2 reads any member with one seek."""

    def __init__(self, path: Path):
        self.path = path
        self._open = atomic_open(path, "wb", sync_dir=False)  # Staging.is_staged checks it exists
        self._offset = 0

    def __enter__(self) -> StagedTar:
        self._f = self._open.__enter__()
        return self

    def add(self, name: str, data: bytes) -> list[int]:
        header = member_header(name, len(data))
        self._f.write(header)
        self._f.write(data)
        self._f.write(b"\0" * (-len(data) % _BLOCK))
        span = [self._offset + len(header), len(data)]
        self._offset += len(header) + len(data) + (-len(data) % _BLOCK)
        return span

    def add_block(self, block: SampleBlock) -> int:
        """Append a sample already laid out as shard members; returns its offset."""
        self._f.write(block.data)
        self._offset += len(block.data)
        return self._offset - len(block.data)

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self._f.write(b"\0" * (2 * _BLOCK))  # end of archive: the staging tar stays a valid tar
        self._open.__exit__(*exc)


def write_unit_index(staging_dir: Path, key: str, doc: dict[str, Any]) -> None:
    """``<unit>.json`` (plain json and an atomic write: no pyarrow in the workers)."""
    atomic_write_bytes(staging_dir / f"{key}.json", json.dumps(doc).encode(), sync_dir=False)


def load_unit_index(staging_dir: Path, key: str) -> dict[str, Any]:
    return json.loads((staging_dir / f"{key}.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Phase 2: staged bytes -> a shard


@dataclass(frozen=True)
class SampleSpec:
    """Where one sample's bytes are staged and what goes with them (picklable, for shard workers)."""

    key: str
    tar: str
    jpg: tuple[int, int]
    sal: tuple[int, int] | None
    label: int
    meta: dict[str, Any]


@dataclass(frozen=True)
class StagedRun:
    """Consecutive samples of one unit staged as finished shard blocks (image datasets, whose
    samples need nothing from phase 2): copied into a shard with one read.

    ``samples``: per sample (key, offset in the run, size, members as in :class:`SampleBlock`).
    """

    tar: str
    offset: int
    size: int
    samples: list[tuple[str, int, int, list[tuple[str, int, int]]]]


class _TarReader:
    """Open staging tars lazily, a bounded number at a time."""

    def __init__(self, limit: int = 64):
        self.limit = limit
        self.open: dict[str, Any] = {}

    def read(self, path: str, span: tuple[int, int]) -> bytes:
        handle = self.open.get(path)
        if handle is None:
            if len(self.open) >= self.limit:
                self.open.pop(next(iter(self.open))).close()
            handle = self.open[path] = open(path, "rb")  # noqa: SIM115 - closed in close()
        handle.seek(span[0])
        return handle.read(span[1])

    def close(self) -> None:
        for h in self.open.values():
            h.close()
        self.open.clear()


def write_one_shard(path: str, parts: list[SampleSpec | StagedRun]) -> int:
    """Copy the staged bytes of ``parts`` into the shard ``path`` (runs in a worker process)."""
    tars = _TarReader()

    def blocks() -> Iterator[SampleBlock]:
        for part in parts:
            if isinstance(part, StagedRun):
                run = memoryview(tars.read(part.tar, (part.offset, part.size)))
                for key, at, size, members in part.samples:
                    yield SampleBlock(key, run[at:at + size], members)
            else:
                sal = tars.read(part.tar, part.sal) if part.sal is not None else None
                yield sample_block(Sample(key=part.key, jpg=tars.read(part.tar, part.jpg), label=part.label,
                                          meta=part.meta, saliency_png=sal))

    try:
        return write_blocks(path, blocks())
    finally:
        tars.close()


def staged_span(spec: SampleSpec) -> tuple[int, int]:
    """``[start, end)`` of a video sample's members in its staging tar: the image's header to the end of
    its last member's padding (:class:`StagedTar` writes a frame's image, then its saliency map)."""
    last = spec.sal or spec.jpg
    return spec.jpg[0] - _BLOCK, last[0] + last[1] + (-last[1] % _BLOCK)


_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def punch(path: str, spans: Iterable[tuple[int, int]]) -> bool:
    """Give the disk blocks under ``spans`` of ``path`` back to the filesystem (Linux ``fallocate``
    with ``FALLOC_FL_PUNCH_HOLE``: the file keeps its size and reads zeros there); bytes outside the
    spans are untouched, even in a block a span only partly covers (the kernel zeroes that part and
    keeps the block). False when the platform or filesystem cannot punch holes, or the file is read-only to
    us (staged parts merged into another directory): nothing is freed."""
    libc = _libc()
    if libc is None:
        return False
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return False
        raise
    try:
        for start, end in spans:
            if libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, ctypes.c_int64(start),
                              ctypes.c_int64(end - start)) != 0:
                err = ctypes.get_errno()
                if err in (errno.EOPNOTSUPP, errno.ENOSYS):
                    return False
                raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)
    return True


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library's ``fallocate`` (glibc and musl on Linux); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "fallocate"):
        return None
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return libc
