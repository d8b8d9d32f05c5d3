"""An ImageFolder tree: ``SRC/<split>/<class>/**/*.jpg`` or, without split folders, ``SRC/<class>/**``.

If ``SRC`` has any of the folders ``train``, ``val`` or ``test``, each one present is a split (other
folders beside them are ignored and reported); otherwise every class folder of ``SRC`` goes to split
``train``. Class names are the class folder names, sorted, as in torchvision's ``ImageFolder``, and
taken over all splits so a class index means the same thing in each. Files are found recursively
by extension (case-insensitive); a file that will not decode is a failure, and the rest go on.
Keys: ``folder_<split>_<class index>_<index of the file in its class, sorted by path>``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from headcam.console import UsageError
from headcam.ingest.image_formats.base import Decoded, Failure, Source, chunk_size

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLIT_DIRS = ("train", "val", "test")


@dataclass(slots=True)  # ImageNet has 1.28M of these
class FileItem:
    key: str
    split: str
    label: int
    path: str
    index: int
    extra: dict[str, Any] | None = None  # the format's extra manifest columns (None: it adds none)


@dataclass
class FileChunk:
    """A few image files, decoded in a worker."""

    items: list[FileItem]

    atomic = False

    def inputs(self) -> tuple[str, ...]:
        return tuple(it.path for it in self.items)

    def decode(self) -> Iterator[Decoded | Failure]:
        for it in self.items:
            try:
                rgb = read_rgb(Path(it.path))
            except Exception as e:  # noqa: BLE001 - any decoder error: record the file, go on
                yield Failure.of(it.path, "decode", e)
                continue
            yield Decoded(key=it.key, split=it.split, label=it.label, source=it.path, rgb=rgb, frame_index=it.index,
                          extra=it.extra or {})


_PNG = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
_JPEG, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


def _plain_8bit(data: bytes) -> bool:
    """A complete 8-bit grey/RGB/RGBA PNG, or a complete JPEG with no EXIF and no Adobe (CMYK) marker:
    files OpenCV decodes to exactly Pillow's pixels (tests/ingest compare them)."""
    if data.startswith(_PNG):
        return len(data) > 26 and data[24] == 8 and data[25] in (0, 2, 6) and data.endswith(_PNG_END) \
            and b"eXIf" not in data
    head = data[:65536]
    return data.startswith(_JPEG) and data.endswith(_JPEG_END) and b"Exif\0\0" not in head and b"Adobe" not in head


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to H x W x 3 uint8, upright (EXIF orientation applied).

    Most files of an image dataset are plain 8-bit PNG or JPEG: OpenCV decodes those 2-3x faster
    than Pillow (what limits the ingest of small images). Anything else (EXIF orientation, 16-bit
    or palette PNG, other formats, a file that looks truncated or that OpenCV refuses) goes to
    Pillow, which applies EXIF orientation and raises on a truncated file.
    """
    data = path.read_bytes()
    if _plain_8bit(data):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        img.load()  # decode now, so a truncated file fails here and not later
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def images_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def split_dirs(src: Path) -> tuple[dict[str, Path], list[str]]:
    """``{split: folder}`` and the names of folders that were ignored."""
    subdirs = _subdirs(src)
    named = {p.name: p for p in subdirs if p.name in SPLIT_DIRS}
    if not named:
        return {"train": src}, []
    return named, [p.name for p in subdirs if p.name not in SPLIT_DIRS]


def open_source(src: Path, seed: int) -> Source:
    if not src.is_dir():
        raise UsageError(f"{src}: not a directory (the folder format wants SRC/<class>/*.jpg)")
    splits, ignored = split_dirs(src)
    classes = {split: {c.name: c for c in _subdirs(d)} for split, d in splits.items()}
    flat = [split for split, dirs in classes.items() if not dirs and images_under(splits[split])]
    if flat:  # e.g. ImageNet's val as distributed: 50k files, labels in a separate file
        raise UsageError(f"{src}: split folder(s) {', '.join(flat)} hold images but no class folders; "
                         "sort them into <split>/<class>/ first")
    names = sorted(set().union(*classes.values()))
    if not names:
        raise UsageError(f"{src}: no class folders (the folder format wants SRC/[train|val|test/]<class>/*.jpg)")
    label_of = {n: i for i, n in enumerate(names)}
    items: dict[str, list[FileItem]] = {}
    for split, dirs in classes.items():
        items[split] = [FileItem(key=f"folder_{split}_{label_of[name]:04d}_{i:06d}", split=split,
                                 label=label_of[name], path=str(p), index=i)
                        for name, d in dirs.items() for i, p in enumerate(images_under(d))]
    if not any(items.values()):
        raise UsageError(f"{src}: no image files ({', '.join(IMAGE_EXTENSIONS)}) under the class folders")
    return files_source("folder", items, names, seed,
                        notes={"split_dirs": {s: str(d) for s, d in splits.items()}, "ignored_dirs": ignored})


def files_source(fmt: str, items: dict[str, list[FileItem]], class_names: list[str], seed: int,
                 extra_schema: pa.Schema | None = None, notes: dict[str, Any] | None = None,
                 inputs: list[str] | None = None) -> Source:
    """A :class:`Source` over image files: each split in its own seeded order, cut into chunks.

    Every reader of image files (ImageFolder trees, CORe50, Places365) shares it, so a resumed run
    cuts the same tasks whatever the format. ``inputs`` (default: every image file, all found on
    disk) are the files ``dataset.json`` lists and a resume checks: a format whose index is a file
    list, where a listed image may be missing, gives its lists instead.
    """
    rng = np.random.default_rng(seed)
    chunk = chunk_size(sum(len(v) for v in items.values()))
    chunks = []
    for split_items in items.values():
        order = rng.permutation(len(split_items))
        chunks += [FileChunk([split_items[i] for i in order[start:start + chunk]])
                   for start in range(0, len(order), chunk)]
    return Source(format=fmt, class_names=class_names, task=chunks.__getitem__, n_tasks=len(chunks),
                  extra_schema=extra_schema,
                  inputs=[it.path for v in items.values() for it in v] if inputs is None else inputs,
                  notes=notes or {})
