"""What every image-dataset reader hands to the ingest: tasks that decode to RGB records.

A reader (one module per on-disk format) turns ``SRC`` into a :class:`Source`: the class names,
the extra manifest columns it adds, and its picklable :class:`Task` objects, made one at a time
on demand (``Source.task(i)``), so a resumed run skips finished ones without reading their pixels.
A task is the engine's unit of work (a chunk of array images, a chunk of image files, one
video); in a worker it yields :class:`Decoded` RGB records or :class:`Failure` rows, so one
unreadable file never stops the rest. Readers do not resize, encode or write:
``headcam.ingest.images`` does that once for every format.
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

    def inputs(self) -> tuple[str, ...]:
        """The files it reads (blamed if decoding them kills the worker)."""
        ...


@dataclass
class Source:
    """A recognised dataset on disk, ready to stream."""

    format: str
    class_names: list[str]
    task: Callable[[int], Task]  # task i, for i in range(n_tasks), always the same for the same inputs and seed
    n_tasks: int
    unit: str = "chunk"  # what one task is, for the progress bar
    extra_schema: pa.Schema | None = None  # manifest columns this format adds
    inputs: list[str] = field(default_factory=list)  # files read, for dataset.json "sources"
    notes: dict[str, Any] = field(default_factory=dict)  # format-specific facts for dataset.json
    finish: Callable[[pa.Table], pa.Table] | None = None  # last pass over the whole manifest


#: Images per task (the engine's unit), at most: large enough that a unit's fixed costs (two files
#: made durable with fsync, a journal record, a task sent to a worker) are small per image; small
#: enough for bounded memory (an STL-10 chunk of pixels is 28 MB).
MAX_CHUNK = 1024
MIN_CHUNK = 64


def chunk_size(n_images: int) -> int:
    """Images per task for a dataset of ``n_images``: about 1/16 of it within [64, 1024], so
    mid-sized datasets still give every worker several tasks. Depends on the inputs only, so a
    resumed run (whatever its ``--workers``) cuts the same tasks."""
    return min(MAX_CHUNK, max(MIN_CHUNK, -(-n_images // 16)))


class ImageArray(Protocol):
    """N images, indexable by an index array -> ``len(indices) x H x W x 3`` uint8 (an ndarray is one)."""

    def __len__(self) -> int: ...

    def __getitem__(self, indices: np.ndarray) -> np.ndarray: ...


def arrays_source(fmt: str, root: str, class_names: list[str], arrays: dict[str, tuple[ImageArray, np.ndarray]],
                  seed: int, inputs: list[str]) -> Source:
    """A :class:`Source` over per-split (images, labels) arrays, each split in its own seeded order.

    ``images`` is an array or anything indexable by an index array (STL-10's on-disk reader): a
    task takes its chunk of pixels out only when it is made, so a 100k-image file stays on disk.
    """
    rng = np.random.default_rng(seed)
    orders = {split: rng.permutation(len(labels)) for split, (_, labels) in arrays.items()}
    chunk = chunk_size(sum(len(order) for order in orders.values()))
    starts = [(split, start) for split, order in orders.items() for start in range(0, len(order), chunk)]

    def task(i: int) -> ArrayChunk:
        split, start = starts[i]
        images, labels = arrays[split]
        idx = orders[split][start:start + chunk]
        return ArrayChunk(split=split, prefix=fmt, source=root, indices=idx.tolist(),
                          pixels=np.ascontiguousarray(images[idx]), labels=[int(labels[j]) for j in idx])

    return Source(format=fmt, class_names=class_names, task=task, n_tasks=len(starts), inputs=inputs)


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

    def inputs(self) -> tuple[str, ...]:
        return (self.source,)

    def decode(self) -> Iterator[Decoded]:
        for i, rgb, label in zip(self.indices, self.pixels, self.labels, strict=True):
            yield Decoded(key=f"{self.prefix}_{self.split}_{i:06d}", split=self.split, label=label,
                          source=self.source, rgb=rgb, frame_index=i)
