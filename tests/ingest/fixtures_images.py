"""Tiny image datasets in their real on-disk formats, built from real frames of the shared media.

Each builder writes exactly the files the real dataset has (ImageFolder tree, CIFAR-10 python
pickles, STL-10 binaries, Toybox object clips encoded with PyAV) and returns what a correct
ingest must find, so tests compare against facts of the fixture and not against the ingest.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from PIL import Image


def resized(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


@dataclass
class Expected:
    """What a correct ingest of a fixture yields."""

    counts: dict[str, int]  # samples per split
    class_names: list[str] = field(default_factory=list)  # as the source declares them (not Toybox: fixed)
    labels: dict[str, dict[int, int]] = field(default_factory=dict)  # split -> label -> count
    bad: list[str] = field(default_factory=list)  # paths that must show up in failures.parquet


def _label_counts(labels) -> dict[int, int]:
    vals, counts = np.unique(np.asarray(labels), return_counts=True)
    return {int(v): int(c) for v, c in zip(vals, counts, strict=True)}


def make_folder(root: Path, frames: list[tuple[int, np.ndarray]], with_splits: bool = True) -> Expected:
    """``root/{train,val}/<class>/*`` (or ``root/<class>/*``): JPEG and PNG files, names with spaces
    and non-ASCII, a nested sub-folder, a non-image file to skip and one corrupt JPEG."""
    names = ["city", "nasa", "tree"]  # the three media files, sorted
    counts: dict[str, int] = {}
    labels: dict[str, dict[int, int]] = {}
    for i, (vi, rgb) in enumerate(frames):
        split = ("val" if i % 4 == 3 else "train") if with_splits else "train"
        d = root / split / names[vi] if with_splits else root / names[vi]
        if i % 5 == 0:
            d = d / "nested"
        d.mkdir(parents=True, exist_ok=True)
        name = f"frame {i:03d} é.png" if i % 3 == 0 else f"img_{i:03d}.JPG"
        Image.fromarray(rgb).save(d / name)
        counts[split] = counts.get(split, 0) + 1
        labels.setdefault(split, {}).setdefault(vi, 0)
        labels[split][vi] += 1
    train_city = root / "train" / "city" if with_splits else root / "city"
    (train_city / "notes.txt").write_text("not an image\n")
    bad = train_city / "corrupt.jpg"
    bad.write_bytes(next((train_city / "nested").iterdir()).read_bytes()[:200])
    return Expected(class_names=names, counts=counts, labels=labels, bad=[str(bad)])


def make_cifar10(root: Path, frames: list[tuple[int, np.ndarray]], n_batches_train: int = 5) -> Expected:
    """``root/cifar-10-batches-py/`` with 5 train batches, a test batch and ``batches.meta``."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    images = np.stack([resized(rgb, 32, 32) for _, rgb in frames])
    labels = [(vi * 3 + i) % 10 for i, (vi, _) in enumerate(frames)]
    flat = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # R plane, G plane, B plane
    n_test = len(frames) // 4
    test, train = (flat[:n_test], labels[:n_test]), (flat[n_test:], labels[n_test:])
    parts = np.array_split(np.arange(len(train[1])), n_batches_train)
    for b, idx in enumerate(parts, start=1):
        _pickle(d / f"data_batch_{b}", {b"batch_label": f"training batch {b} of 5".encode(),
                                        b"labels": [train[1][i] for i in idx], b"data": train[0][idx],
                                        b"filenames": [f"f{i}.png".encode() for i in idx]})
    _pickle(d / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": list(test[1]), b"data": test[0],
                               b"filenames": [f"t{i}.png".encode() for i in range(n_test)]})
    _pickle(d / "batches.meta", {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": 10000,
                                 b"num_vis": 3072})
    return Expected(class_names=names, counts={"train": len(train[1]), "test": n_test},
                    labels={"train": _label_counts(train[1]), "test": _label_counts(test[1])})


def cifar_image(root: Path, split: str, index: int) -> np.ndarray:
    """Image ``index`` of a CIFAR split, decoded independently of the ingest (32 x 32 x 3)."""
    d = root / "cifar-10-batches-py"
    files = ["test_batch"] if split == "test" else [f"data_batch_{b}" for b in range(1, 6)]
    data = np.concatenate([pickle.loads((d / f).read_bytes(), encoding="bytes")[b"data"] for f in files])
    return data[index].reshape(3, 32, 32).transpose(1, 2, 0)


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def make_stl10(root: Path, frames: list[tuple[int, np.ndarray]]) -> Expected:
    """``root/stl10_binary/``: train/test X and y (1-based labels), unlabeled_X, class_names.txt."""
    d = root / "stl10_binary"
    d.mkdir(parents=True)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (d / "class_names.txt").write_text("\n".join(names) + "\n")
    images = np.stack([resized(rgb, 96, 96) for _, rgb in frames])
    colmajor = images.transpose(0, 3, 2, 1)  # N x C x W x H: each channel plane stored column-major
    labels = np.array([(vi * 4 + i) % 10 for i, (vi, _) in enumerate(frames)], dtype=np.uint8)
    n = len(frames)
    splits = {"train": slice(0, n // 2), "test": slice(n // 2, 3 * n // 4), "unlabeled": slice(3 * n // 4, n)}
    for split, sl in splits.items():
        np.ascontiguousarray(colmajor[sl]).tofile(d / f"{split}_X.bin")
        if split != "unlabeled":
            (labels[sl] + 1).astype(np.uint8).tofile(d / f"{split}_y.bin")
    return Expected(class_names=names, counts={s: sl.stop - sl.start for s, sl in splits.items()},
                    labels={"train": _label_counts(labels[splits["train"]]),
                            "test": _label_counts(labels[splits["test"]]),
                            "unlabeled": {-1: splits["unlabeled"].stop - splits["unlabeled"].start}})


def stl_image(root: Path, split: str, index: int) -> np.ndarray:
    raw = np.fromfile(root / "stl10_binary" / f"{split}_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96)
    return raw[index].transpose(2, 1, 0)


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    """Encode ``frames`` (all the same even size) as H.264 MP4 at a constant ``fps``."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for rgb in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


TOYBOX_OBJECTS = {"cat": "animals", "cup": "households", "car": "vehicles"}
TOYBOX_IDS = (1, 2, 28, 30)
TOYBOX_TRANSFORMS = ("rxplus", "hodgepodge")
TOYBOX_SECONDS = 3  # each clip: 3 s at 10 fps -> frames at t = 0, 1, 2 s with --fps 1


def make_toybox(root: Path, frames: list[tuple[int, np.ndarray]]) -> Expected:
    """3 categories x 4 objects (ids 1, 2, 28, 30) x 2 transformations, 3 s each at 10 fps, 96 x 64
    px, plus one object clip of random bytes named .mp4 (must be recorded, others go on)."""
    pool = [resized(rgb, 96, 64) for _, rgb in frames]
    n = 0
    for ci, (cat, sup) in enumerate(TOYBOX_OBJECTS.items()):
        for oid in TOYBOX_IDS:
            d = root / sup / f"{cat}_{oid:02d}_pivothead"
            d.mkdir(parents=True)
            for ti, tr in enumerate(TOYBOX_TRANSFORMS):
                start = (ci * 7 + oid + ti * 5) % (len(pool) - 10 * TOYBOX_SECONDS + 1)
                clip = [pool[(start + j) % len(pool)] for j in range(10 * TOYBOX_SECONDS)]
                write_mp4(d / f"{cat}_{oid:02d}_pivothead_{tr}.mp4", clip)
                n += TOYBOX_SECONDS
    bad = root / "animals" / "cat_02_pivothead" / "cat_02_pivothead_broken.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    return Expected(counts={"all": n}, bad=[str(bad)])
