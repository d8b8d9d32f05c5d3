"""Toybox: ``ROOT/{animals,households,vehicles}/<category>_<id:02d>_pivothead/*.mp4`` (SPEC §7).

Each object folder holds one clip per transformation (rotations, translations, zoom,
"hodgepodge", ...). Frames are sampled at ``fps`` (1) by timestamp with the ingest's own video
decoder (``headcam.ingest.decode``: rotation applied, non-zero start handled), then go through
the common resize 256 / centre crop 224 shifted 16 px up.

Labels are the category's index in :data:`CATEGORIES`, the 12 categories in alphabetical order.
Both evaluation protocols live in one set of shards, split ``all``; the manifest says which side
of each protocol a frame is on, and a protocol selects its frames by key:

- ``split_exemplar``: ``train`` for objects 1-27, ``test`` for 28-30, in every category;
- ``split_iid``: a seeded random half of all frames is ``train``, the rest ``test``
  (a permutation of the sorted keys, so it depends only on the seed and the frames ingested).

Other manifest columns: ``category``, ``object`` (id), ``transform`` (the clip's name without its
``<category>_<id>_pivothead_`` prefix). Keys: ``toybox_<category>_<id>_<transform>_<k>`` with k
the sampled-frame index. A clip that fails to open or decode is recorded and none of its frames
are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from headcam.console import UsageError
from headcam.ingest.image_formats.base import Decoded, Failure, Source, key_part

SUPER_CATEGORIES = {
    "animals": ("cat", "duck", "giraffe", "horse"),
    "households": ("ball", "cup", "mug", "spoon"),
    "vehicles": ("airplane", "car", "helicopter", "truck"),
}
CATEGORIES = tuple(sorted(c for cats in SUPER_CATEGORIES.values() for c in cats))
EXEMPLAR_TEST_IDS = frozenset({28, 29, 30})
SPLIT = "all"
VIDEO_EXTENSIONS = (".mp4",)
OBJECT_DIR = re.compile(r"^(?P<category>[a-z]+)_(?P<object>\d+)_pivothead$")

EXTRA_SCHEMA = pa.schema([
    ("category", pa.string()),
    ("object", pa.int64()),
    ("transform", pa.string()),
    ("split_iid", pa.string()),
    ("split_exemplar", pa.string()),
])


def exemplar_split(object_id: int) -> str:
    return "test" if object_id in EXEMPLAR_TEST_IDS else "train"


@dataclass
class VideoTask:
    """One object clip: all its frames at ``fps``, or (on any failure) none of them."""

    path: str
    category: str
    object_id: int
    transform: str  # as in the file name
    transform_key: str  # the key-safe, per-object unique form
    fps: float

    atomic = True

    def inputs(self) -> tuple[str, ...]:
        return (self.path,)

    def decode(self) -> Iterator[Decoded | Failure]:
        from headcam.ingest import decode as video

        try:
            info = video.probe(self.path)
        except Exception as e:  # noqa: BLE001 - unreadable container, no video stream, ...
            yield Failure.of(self.path, "probe", e)
            return
        stats = video.DecodeStats()
        extra = {"category": self.category, "object": self.object_id, "transform": self.transform,
                 "split_exemplar": exemplar_split(self.object_id)}
        prefix = f"toybox_{self.category}_{self.object_id:02d}_{self.transform_key}"
        try:
            for k, frame in enumerate(video.decode(self.path, info, self.fps, "pyav", stats)):
                yield Decoded(key=f"{prefix}_{k:03d}", split=SPLIT, label=CATEGORIES.index(self.category),
                              source=self.path, rgb=frame.rgb, frame_index=k, pts=frame.pts, extra=extra)
        except Exception as e:  # noqa: BLE001 - a broken stream: the clip is dropped and recorded
            yield Failure.of(self.path, "decode", e)
            return
        if stats.n_decoded == 0:
            yield Failure(self.path, "decode", "NoFrames", "the video stream decoded to no frames")


def _object_dirs(root: Path) -> list[Path]:
    """Object folders under ``root`` (the dataset root, or one super-category folder)."""
    found = [d for d in root.glob("*/*_pivothead") if d.is_dir()] + [d for d in root.glob("*_pivothead") if d.is_dir()]
    return sorted(found)


def _transform(video: Path, object_dir: str) -> str:
    stem = video.stem
    return stem[len(object_dir) + 1:] if stem.startswith(object_dir + "_") and len(stem) > len(object_dir) + 1 else stem


def list_tasks(root: Path, fps: float) -> tuple[list[VideoTask], list[str]]:
    """Video tasks in sorted path order, and the folders skipped (not a known category)."""
    tasks, skipped = [], []
    for d in _object_dirs(root):
        m = OBJECT_DIR.match(d.name)
        if m is None or m["category"] not in CATEGORIES:
            skipped.append(str(d))
            continue
        used: set[str] = set()
        for v in sorted(p for p in d.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()):
            transform = _transform(v, d.name)
            tkey, n = key_part(transform), 1
            while tkey in used:  # names that differ only in unsafe characters
                n += 1
                tkey = f"{key_part(transform)}-{n}"
            used.add(tkey)
            tasks.append(VideoTask(path=str(v), category=m["category"], object_id=int(m["object"]),
                                   transform=transform, transform_key=tkey, fps=fps))
    return tasks, skipped


def iid_split(keys: list[str], seed: int) -> list[str]:
    """``split_iid`` of each key: a seeded random half of the frames (by sorted key) ``train``, the rest ``test``."""
    order = sorted(keys)
    perm = np.random.default_rng(seed).permutation(len(order))
    train = {order[i] for i in perm[: (len(order) + 1) // 2]}
    return ["train" if k in train else "test" for k in keys]


def with_iid_split(manifest: pa.Table, seed: int) -> pa.Table:
    """The manifest with its ``split_iid`` column filled (done once all frames are known)."""
    values = pa.array(iid_split(manifest.column("key").to_pylist(), seed), pa.string())
    return manifest.set_column(manifest.schema.get_field_index("split_iid"), "split_iid", values)


def open_source(src: Path, seed: int, fps: float) -> Source:
    if not src.is_dir():
        raise UsageError(f"{src}: not a directory (toybox wants ROOT/<super>/<category>_<id>_pivothead/*.mp4)")
    tasks, skipped = list_tasks(src, fps)
    if not tasks:
        raise UsageError(f"{src}: no Toybox clips (expected ROOT/{{animals,households,vehicles}}/"
                         "<category>_<id:02d>_pivothead/*.mp4)")
    return Source(format="toybox", class_names=list(CATEGORIES), task=tasks.__getitem__, n_tasks=len(tasks),
                  unit="video",
                  extra_schema=EXTRA_SCHEMA, inputs=[t.path for t in tasks],
                  notes={"split": SPLIT, "exemplar_test_ids": sorted(EXEMPLAR_TEST_IDS), "iid_seed": seed,
                         "fps": fps, "skipped_dirs": skipped},
                  finish=lambda manifest: with_iid_split(manifest, seed))
