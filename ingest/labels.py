"""``--label-from parent``: a labelled video set's classes and splits from its folders.

Labelled video sets (SSv2, Kinetics and the few-shot sets made from them) ship as
``[train|val|test/]<class name>/<video>``: the class is the parent folder's name, and the set
usually comes already split. So:

- **class** = the name of the video's parent folder; class indices follow the sorted names (as
  ImageFolder and ``headcam-ingest images --format folder`` number them), the same in every split.
- **split** = the grandparent folder when it is named ``train``, ``val``/``validation`` or ``test``
  (the set's own split, which published results use); a set where only some videos sit in such a
  folder is a usage error (one of them is named), since no rule would fit both halves.
- otherwise **whole videos** are held out, per class in sorted file-name order: every
  ``val_every``-th video, or with ``val_tail`` F the last round(F·n) of a class's n videos. A
  labelled set's sample is a video; clips of one video are near-duplicates, so the segment rule
  (held-out clips inside each segment) would put the same video on both sides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from headcam.console import UsageError

LABEL_FROM = ("segment", "parent")

#: Top folder names taken as the set's own split, and the split each becomes.
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class FolderLabels:
    """The classes (sorted names) and, per video path, its class index and split."""

    names: list[str]
    videos: dict[str, tuple[int, str]]


def _split_folder(path: str) -> str | None:
    return SPLIT_FOLDERS.get(os.path.basename(os.path.dirname(os.path.dirname(path))).lower())


def folder_labels(paths: list[str], val_every: int, val_tail: float = 0.0) -> FolderLabels:
    """Classes and splits of the videos at ``paths`` (see the module docstring); a layout that mixes
    split folders with other folders is a :class:`UsageError`."""
    names = sorted({os.path.basename(os.path.dirname(p)) for p in paths})
    index = {name: i for i, name in enumerate(names)}
    folders = {p: _split_folder(p) for p in paths}
    inside = [p for p in paths if folders[p]]
    if inside and len(inside) < len(paths):
        outside = next(p for p in paths if not folders[p])
        raise UsageError(f"--label-from parent: {outside} is not under a train/, val/ or test/ folder but "
                         f"{inside[0]} is; give the split folders alone, or neither")
    videos = {p: (index[os.path.basename(os.path.dirname(p))], folders[p] or "train") for p in paths}
    if not inside:
        by_class: dict[int, list[str]] = {}
        for p in sorted(paths, key=lambda p: (os.path.basename(p), p)):
            by_class.setdefault(videos[p][0], []).append(p)
        for members in by_class.values():
            held = (members[len(members) - round(len(members) * val_tail):] if val_tail > 0
                    else members[val_every - 1::val_every] if val_every > 0 else [])
            videos.update({p: (videos[p][0], "val") for p in held})
    return FolderLabels(names, videos)


__all__ = ["LABEL_FROM", "SPLIT_FOLDERS", "FolderLabels", "folder_labels"]
