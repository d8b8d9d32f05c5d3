"""STL-10 binary version: ``stl10_binary/{train,test,unlabeled}_X.bin``, ``{train,test}_y.bin``.

``*_X.bin`` is raw uint8, N x 3 x 96 x 96 with each channel plane stored column-major (so the
image is the plane transposed); ``*_y.bin`` holds 1-based uint8 labels; ``class_names.txt`` one
name a line. Splits: ``train``, ``test`` and ``unlabeled`` (label -1, 100k images): the files are
memory-mapped and copied out a chunk at a time, never whole. Keys: ``stl10_<split>_<index>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from headcam.ingest.image_formats.base import Source, array_tasks, n_chunks

from headcam.console import UsageError

SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
SPLITS = ("train", "test", "unlabeled")


def find_root(src: Path) -> Path:
    for cand in (src, src / "stl10_binary"):
        if (cand / "class_names.txt").is_file():
            return cand
    raise UsageError(f"{src}: not an STL-10 binary folder (no class_names.txt; expected stl10_binary/)")


def map_images(path: Path) -> np.ndarray:
    """The images of one ``*_X.bin`` as a read-only N x 96 x 96 x 3 view (memory-mapped)."""
    size = path.stat().st_size
    if size % IMAGE_BYTES:
        raise UsageError(f"{path}: size {size} is not a multiple of {IMAGE_BYTES} (truncated STL-10 file?)")
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(size // IMAGE_BYTES, 3, SIDE, SIDE))
    return raw.transpose(0, 3, 2, 1)  # channel planes are column-major: (c, x, y) -> (y, x, c)


def read_labels(path: Path, n: int, n_classes: int) -> np.ndarray:
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != n:
        raise UsageError(f"{path}: {len(labels)} labels for {n} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise UsageError(f"{path}: labels outside 1..{n_classes}")
    return labels


def open_source(src: Path, seed: int, chunk: int) -> Source:
    root = find_root(src)
    names = [line.strip() for line in (root / "class_names.txt").read_text().splitlines() if line.strip()]
    present = [s for s in SPLITS if (root / f"{s}_X.bin").is_file()]
    if not present:
        raise UsageError(f"{root}: no STL-10 image files (*_X.bin)")
    arrays, inputs = {}, [str(root / "class_names.txt")]
    for split in present:
        images = map_images(root / f"{split}_X.bin")
        inputs.append(str(root / f"{split}_X.bin"))
        if split == "unlabeled":
            labels = np.full(len(images), -1, dtype=np.int64)
        else:
            y = root / f"{split}_y.bin"
            if not y.is_file():
                raise UsageError(f"{root}: {split}_X.bin has no {split}_y.bin beside it")
            labels = read_labels(y, len(images), len(names))
            inputs.append(str(y))
        arrays[split] = (images, labels)
    rng = np.random.default_rng(seed)
    orders = {split: rng.permutation(len(labels)) for split, (_, labels) in arrays.items()}

    def tasks():
        for split, (images, labels) in arrays.items():
            yield from array_tasks(split, images, labels, "stl10", str(root), orders[split], chunk)

    return Source(format="stl10", class_names=names, tasks=tasks(),
                  n_tasks=sum(n_chunks(len(labels), chunk) for _, labels in arrays.values()), inputs=inputs)
