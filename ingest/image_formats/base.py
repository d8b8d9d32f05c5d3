"""What every image-dataset reader hands to the ingest: tasks that decode to RGB records.

A reader (one module per on-disk format) turns ``SRC`` into a :class:`Source`: the class names,
the extra manifest columns it adds, and a lazy stream of picklable :class:`Task` objects. A task
is the unit of parallel work (a chunk of array images, a chunk of image files, one video); in a
worker it yields :class:`Decoded` RGB records or :class:`Failure` rows, so one unreadable file never
stops the rest. Readers do not resize, encode or write: ``headcam.ingest.images`` does that once for
every format.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def key_part(text: str) -> str:
    """``text`` made safe for a sample key (``[A-Za-z0-9_-]``; dots and spaces become ``-``)."""
    return _KEY_UNSAFE.sub("-", text).strip("-") or "x"


@dataclass
class Decoded:
    """One decoded image before resizing/encoding, with everything its manifest row needs."""

    key: str
    split: str
    label: int
    source: str
    rgb: np.ndarray  # H x W x 3 uint8
    frame_index: int = -1
    pts: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)  # the reader's extra manifest columns


@dataclass
class Failure:
    """An input that could not be read; becomes one row of ``failures.parquet``."""

    path: str
    stage: str
    error_type: str
    message: str

    @classmethod
    def of(cls, path: str, stage: str, error: BaseException) -> Failure:
        return cls(path=path, stage=stage, error_type=type(error).__name__, message=str(error) or repr(error))


class Task(Protocol):
    """A picklable unit of work. ``atomic``: one failure voids all its samples (a broken video)."""

    atomic: bool

    def decode(self) -> Iterator[Decoded | Failure]: ...


@dataclass
class Source:
    """A recognised dataset on disk, ready to stream."""

    format: str
    class_names: list[str]
    tasks: Iterator[Task]
    n_tasks: int  # progress-bar total
    unit: str = "chunk"  # what one task is, for the progress bar
    split_sizes: dict[str, int] | None = None  # images per split, when known before decoding (not Toybox)
    extra_schema: pa.Schema | None = None  # manifest columns this format adds
    inputs: list[str] = field(default_factory=list)  # files read, for dataset.json "sources"
    notes: dict[str, Any] = field(default_factory=dict)  # format-specific facts for dataset.json
    finish: Callable[[pa.Table], pa.Table] | None = None  # last pass over the whole manifest


def n_chunks(n: int, chunk: int) -> int:
    return -(-n // chunk)


class ImageArray(Protocol):
    """N images, indexable by an index array -> ``len(indices) x H x W x 3`` uint8 (an ndarray is one)."""

    def __len__(self) -> int: ...

    def __getitem__(self, indices: np.ndarray) -> np.ndarray: ...


def array_tasks(split: str, images: ImageArray, labels: np.ndarray, prefix: str, source: str,
                order: np.ndarray, chunk: int) -> Iterator[ArrayChunk]:
    """Tasks over ``N x H x W x 3`` images, in ``order``, ``chunk`` at a time.

    ``images`` is an array or anything indexable by an index array (STL-10's on-disk reader): only
    one chunk of pixels is taken out at a time, so a 100k-image file stays on disk.
    """
    for start in range(0, len(order), chunk):
        idx = order[start:start + chunk]
        yield ArrayChunk(split=split, prefix=prefix, source=source, indices=idx.tolist(),
                         pixels=np.ascontiguousarray(images[idx]),
                         labels=[int(labels[i]) for i in idx])


def arrays_source(fmt: str, root: str, class_names: list[str], arrays: dict[str, tuple[ImageArray, np.ndarray]],
                  seed: int, chunk: int, inputs: list[str]) -> Source:
    """A :class:`Source` over per-split (images, labels) arrays, each split in its own seeded order."""
    rng = np.random.default_rng(seed)
    orders = {split: rng.permutation(len(labels)) for split, (_, labels) in arrays.items()}

    def tasks() -> Iterator[ArrayChunk]:
        for split, (images, labels) in arrays.items():
            yield from array_tasks(split, images, labels, fmt, root, orders[split], chunk)

    return Source(format=fmt, class_names=class_names, tasks=tasks(),
                  n_tasks=sum(n_chunks(len(labels), chunk) for _, labels in arrays.values()),
                  split_sizes={split: len(labels) for split, (_, labels) in arrays.items()}, inputs=inputs)


@dataclass
class ArrayChunk:
    """Images already decoded into an array (CIFAR-10 pickles, STL-10 binaries)."""

    split: str
    prefix: str
    source: str
    indices: list[int]
    pixels: np.ndarray  # len(indices) x H x W x 3 uint8
    labels: list[int]

    atomic = False

    def decode(self) -> Iterator[Decoded]:
        for i, rgb, label in zip(self.indices, self.pixels, self.labels, strict=True):
            yield Decoded(key=f"{self.prefix}_{self.split}_{i:06d}", split=self.split, label=label,
                          source=self.source, rgb=rgb, frame_index=i)
