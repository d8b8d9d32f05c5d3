"""CIFAR-10 "python version": ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``.

Each batch is a pickle of a dict with ``b"data"`` (uint8, N x 3072, each row the R, G and B planes
of a 32 x 32 image) and ``b"labels"``; ``batches.meta`` holds ``b"label_names"``. Splits: ``train``
(the five data batches, in order) and ``test``. Keys: ``cifar10_<split>_<index in split>``. The
arrays (150 MB for train) are held in memory; JPEG bytes are produced a chunk at a time.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from headcam.console import UsageError
from headcam.ingest.image_formats.base import Source, arrays_source

TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
META = "batches.meta"


def find_root(src: Path) -> Path:
    """``src`` itself or its ``cifar-10-batches-py`` child, whichever holds ``batches.meta``."""
    for cand in (src, src / "cifar-10-batches-py"):
        if (cand / META).is_file():
            return cand
    raise UsageError(f"{src}: not a CIFAR-10 python folder (no {META}; expected cifar-10-batches-py/)")


def _unpickle(path: Path) -> dict[bytes, Any]:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def load_batches(root: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images N x 32 x 32 x 3 uint8 and labels N, from the named batch files in order."""
    images, labels = [], []
    for name in names:
        d = _unpickle(root / name)
        images.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(d[b"labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)  # contiguous (concatenate copies): fast chunks later


def open_source(src: Path, seed: int) -> Source:
    root = find_root(src)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _unpickle(root / META)[b"label_names"]]
    splits = {"train": TRAIN_BATCHES, "test": [TEST_BATCH]}
    missing = [n for files in splits.values() for n in files if not (root / n).is_file()]
    if missing:
        raise UsageError(f"{root}: CIFAR-10 batch files missing: {', '.join(missing)}")
    arrays = {split: load_batches(root, files) for split, files in splits.items()}
    inputs = [str(root / n) for files in splits.values() for n in files] + [str(root / META)]
    return arrays_source("cifar10", str(root), names, arrays, seed, inputs)
