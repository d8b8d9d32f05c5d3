"""STL-10 binary version: ``stl10_binary/{train,test,unlabeled}_X.bin``, ``{train,test}_y.bin``.

``*_X.bin`` is raw uint8, N x 3 x 96 x 96 with each channel plane stored column-major (so the
image is the plane transposed); ``*_y.bin`` holds 1-based uint8 labels; ``class_names.txt`` one
name a line. Splits: ``train``, ``test`` and ``unlabeled`` (label -1, 100k images): the files are
read a chunk at a time, never whole. Keys: ``stl10_<split>_<index>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headcam.console import UsageError
from headcam.ingest.image_formats.base import Source, arrays_source

SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
SPLITS = ("train", "test", "unlabeled")


def find_root(src: Path) -> Path:
    for cand in (src, src / "stl10_binary"):
        if (cand / "class_names.txt").is_file():
            return cand
    raise UsageError(f"{src}: not an STL-10 binary folder (no class_names.txt; expected stl10_binary/)")


class ImageFile:
    """The images of one ``*_X.bin``, read by index on demand as N x 96 x 96 x 3.

    Plain positioned reads rather than a memory map: a map read in random order would leave the
    whole file (2.7 GB for ``unlabeled``) counted in this process's resident memory.
    """

    def __init__(self, path: Path):
        size = path.stat().st_size
        if size % IMAGE_BYTES:
            raise UsageError(f"{path}: size {size} is not a multiple of {IMAGE_BYTES} (truncated STL-10 file?)")
        self.path, self.n = path, size // IMAGE_BYTES

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), 3, SIDE, SIDE), np.uint8)
        with open(self.path, "rb") as f:
            for row, i in zip(out, indices, strict=True):
                f.seek(int(i) * IMAGE_BYTES)
                f.readinto(row)
        return out.transpose(0, 3, 2, 1)  # channel planes are column-major: (c, x, y) -> (y, x, c)


def read_labels(path: Path, n: int, n_classes: int) -> np.ndarray:
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != n:
        raise UsageError(f"{path}: {len(labels)} labels for {n} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise UsageError(f"{path}: labels outside 1..{n_classes}")
    return labels


def open_source(src: Path, seed: int) -> Source:
    root = find_root(src)
    names = [line.strip() for line in (root / "class_names.txt").read_text().splitlines() if line.strip()]
    present = [s for s in SPLITS if (root / f"{s}_X.bin").is_file()]
    if not present:
        raise UsageError(f"{root}: no STL-10 image files (*_X.bin)")
    arrays, inputs = {}, [str(root / "class_names.txt")]
    for split in present:
        images = ImageFile(root / f"{split}_X.bin")
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
    return arrays_source("stl10", str(root), names, arrays, seed, inputs)
