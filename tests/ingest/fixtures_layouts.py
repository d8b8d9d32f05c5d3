"""Tiny datasets in the layouts the evaluation datasets ship in, written by the tests themselves.

Class folders (Labeled-S, Konkle, ecoset's train/val/test, ImageNet), CORe50's
``core50_128x128/s<session>/o<object>/`` and Places365's image folders with its official file lists.
Images are small PNG/JPEG files whose colour is the class's (plus noise), so a pixel kNN tells the
classes apart and a wrong label shows in the score. Each builder returns facts of what it wrote,
so tests compare the ingest against the fixture, not against itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def class_image(label: int, index: int, size: int = 32) -> np.ndarray:
    """A ``size`` x ``size`` RGB image: the class's colour plus seeded noise (distinct per image)."""
    colour = np.array([(label * 97 + 30) % 256, (label * 53 + 80) % 256, (label * 151 + 160) % 256], np.float64)
    noise = np.random.default_rng(label * 10007 + index).normal(0, 12, (size, size, 3))
    return np.clip(colour + noise, 0, 255).astype(np.uint8)


def make_class_folders(root: Path, classes: list[str], per_class: dict[str, int] | int,
                       splits: tuple[str, ...] = ()) -> dict[str, dict[str, list[Path]]]:
    """``root/[<split>/]<class>/img_<i>.png`` (every third a .jpg); returns split -> class -> files written
    (split ``train`` when there are no split folders)."""
    counts = per_class if isinstance(per_class, dict) else dict.fromkeys(splits or ("train",), per_class)
    written: dict[str, dict[str, list[Path]]] = {}
    for s, split in enumerate(splits or ("train",)):
        for label, name in enumerate(classes):
            d = root / split / name if splits else root / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(counts[split]):
                path = d / (f"img_{i:03d}.jpg" if i % 3 == 2 else f"img_{i:03d}.png")
                Image.fromarray(class_image(label, 1000 * s + i)).save(path, quality=95)
                written.setdefault(split, {}).setdefault(name, []).append(path)
    return written


def make_core50(root: Path, sessions: tuple[int, ...], objects: tuple[int, ...], frames: int) -> list[Path]:
    """``root/core50_128x128/s<s>/o<o>/C_<ss>_<oo>_<fff>.png`` as the dataset names them, plus a stray session
    (s12), a stray object folder (o51) and a text file that must all be skipped; returns the images written."""
    base = root / "core50_128x128"
    written = []
    for s in sessions:
        for o in objects:
            d = base / f"s{s}" / f"o{o}"
            d.mkdir(parents=True)
            for f in range(frames):
                path = d / f"C_{s:02d}_{o:02d}_{f:03d}.png"
                Image.fromarray(class_image(o - 1, 100 * s + f)).save(path)
                written.append(path)
    for stray in (base / "s12" / "o1", base / f"s{sessions[0]}" / "o51"):
        stray.mkdir(parents=True)
        Image.fromarray(class_image(0, 999)).save(stray / "C_12_01_000.png")
    (base / "README.txt").write_text("not a session\n")
    return written


PLACES_CATEGORIES = ["/a/airfield", "/a/apartment_building/outdoor", "/b/bakery/shop"]


def make_places365(root: Path, n_train: int, n_val: int, missing_val: int = 0) -> dict[str, list[tuple[str, int]]]:
    """Places365-Standard's layout: ``data_256/<letter>/<category>/<8 digits>.jpg``, a flat ``val_256/`` and the
    three lists in ``filelist_places365-standard/``; ``missing_val`` listed val files are not written. Returns
    split -> [(path relative to the image folder, label)] as listed."""
    lists = root / "filelist_places365-standard"
    lists.mkdir(parents=True)
    (lists / "categories_places365.txt").write_text(
        "".join(f"{c} {i}\n" for i, c in enumerate(PLACES_CATEGORIES)))
    train = [(f"{c}/{i + 1:08d}.jpg", label) for label, c in enumerate(PLACES_CATEGORIES) for i in range(n_train)]
    val = [(f"Places365_val_{n + 1:08d}.jpg", n % len(PLACES_CATEGORIES))
           for n in range(n_val * len(PLACES_CATEGORIES))]
    (lists / "places365_train_standard.txt").write_text("".join(f"{p} {lab}\n" for p, lab in train))
    (lists / "places365_val.txt").write_text("".join(f"{p} {lab}\n" for p, lab in val))
    for n, (rel, label) in enumerate(train):
        path = root / "data_256" / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(class_image(label, n)).save(path, quality=95)
    (root / "val_256").mkdir()
    for n, (rel, label) in enumerate(val[missing_val:]):
        Image.fromarray(class_image(label, 5000 + n)).save(root / "val_256" / rel, quality=95)
    return {"train": train, "val": val}
