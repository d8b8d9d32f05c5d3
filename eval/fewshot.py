"""N-shot subsets and clip-level protocol sides: what few-shot video fine-tuning tunes on and scores.

Orhan et al. (2024) fine-tune video models on 10- and 50-shot subsets of SSv2 and Kinetics-700
(eminorhan/mae_st ``datafiles/old/{ssv2,kinetics}-{10,50}shot/train.csv``: exactly N videos in each of the 174 /
700 classes, and every 10-shot video is also a 50-shot one). The folders were made outside the repository (SSv2's
are the first N file names of each class, Kinetics' a random draw). Here a class's N units are the first N of a
seeded permutation of its units, drawn class by class whatever N is, so for one seed the 10-shot subset lies
inside the 50-shot one, as the reference's do, and nothing depends on file names.

A *shot* is a shard clip (the manifest's ``clip`` column) when the run reads clips, else one sample; on a set
labelled by folder (``headcam-ingest videos --label-from parent``, where a sample is a video, as SSv2's and
Kinetics' are) it is a video, with every clip of it that is long enough (the reference reads a random clip of
each of its N videos every epoch). A clip counts only when it holds at least ``span`` frames of the protocol side
(the loader skips shorter ones, so a class could otherwise come out short): :func:`clip_side` turns a side of
frames into one row per such clip, keyed by its first frame, :func:`clip_videos` names each row's video, and
:func:`shots_subset` draws from either kind of side. :func:`clip_keys` is the loader's key filter for a clip side
(every frame of its clips), :func:`clip_key_map` maps any frame to its clip's row.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from headcam.console import UsageError
from headcam.eval.protocols import Source


def _clip_columns(src: Source) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key, clip id, frame index) of every manifest row, as arrays."""
    m = src.dataset.manifest
    return (np.array(m.column("key").to_pylist(), dtype=object), np.array(m.column("clip").to_pylist(), np.int64),
            np.array(m.column("frame_index").to_pylist(), np.int64))


def clip_side(src: Source, span: int) -> tuple[Source, int]:
    """``src`` (frames) as one row per clip holding at least ``span`` of its frames: the clip's first frame (in
    time order) as its key, that frame's label as the clip's; and how many clips were too short. A dataset
    without clips (images: clip -1) is a one-line UsageError."""
    keys, clips, order = _clip_columns(src)
    row = {k: i for i, k in enumerate(keys.tolist())}
    idx = np.array([row[k] for k in src.keys], dtype=np.int64)
    if len(idx) and (clips[idx] < 0).any():
        raise UsageError(f"{src.dataset.root}: its samples are not video clips (no clip ids: an image dataset); "
                         "video fine-tuning reads clips made by headcam-ingest videos")
    firsts, short = [], 0
    by_clip: dict[int, list[int]] = {}
    for pos, i in enumerate(idx.tolist()):
        by_clip.setdefault(int(clips[i]), []).append(pos)
    for members in by_clip.values():
        if len(members) < span:
            short += 1
            continue
        firsts.append(min(members, key=lambda p: order[idx[p]]))
    firsts.sort()
    labels = src.labels[firsts] if firsts else np.zeros(0, np.int64)
    return dataclasses.replace(src, keys=[src.keys[p] for p in firsts], labels=labels), short


def clip_videos(side: Source) -> np.ndarray:
    """The source video of each row of ``side`` (the manifest's ``source``), as integers."""
    m = side.dataset.manifest
    source = dict(zip(m.column("key").to_pylist(), m.column("source").to_pylist(), strict=True))
    return np.unique([source[k] for k in side.keys], return_inverse=True)[1].astype(np.int64) if side.keys \
        else np.zeros(0, np.int64)


def clip_keys(side: Source) -> frozenset[str]:
    """Every frame key of the clips of a clip side (:func:`clip_side`): the loader's key filter."""
    keys, clips, _ = _clip_columns(side)
    clip_of = dict(zip(keys.tolist(), clips.tolist(), strict=True))
    wanted = {clip_of[k] for k in side.keys}
    return frozenset(k for k, c in zip(keys.tolist(), clips.tolist(), strict=True) if c in wanted)


def clip_key_map(side: Source) -> dict[str, str]:
    """Any frame key of a clip side's clips -> the key of its clip's row (the clip's first frame)."""
    keys, clips, _ = _clip_columns(side)
    clip_of = dict(zip(keys.tolist(), clips.tolist(), strict=True))
    row_of = {clip_of[k]: k for k in side.keys}
    return {k: row_of[c] for k, c in clip_of.items() if c in row_of}


def shots_subset(src: Source, shots: int, *, seed: int, class_names: list[str], classes: np.ndarray | None = None,
                 groups: np.ndarray | None = None, units: str = "samples") -> Source:
    """``shots`` shots of each of ``classes`` (default: the classes ``src`` has), seeded, in ``src``'s order; a shot
    is a row, or with ``groups`` (an id per row: its video) every row of one group. Per class (in class order) a
    permutation of its shots from one generator, its first ``shots`` kept, so a smaller N gives a subset of a larger
    one. A class with fewer shots (none included) is a one-line UsageError naming it and counting the other short
    ones; ``units`` says what a shot is in it ("samples", "clips of at least 16 frames")."""
    if shots < 1:
        raise UsageError(f"--shots {shots}: the number of training {units} per class must be >= 1")
    classes = np.unique(src.labels) if classes is None else np.unique(classes)
    unit = np.arange(len(src.keys)) if groups is None else np.asarray(groups)
    per_class = {c: np.unique(unit[src.labels == c]) for c in range(len(class_names))}
    counts = np.array([len(per_class[c]) for c in classes], dtype=np.int64)
    short = np.flatnonzero(counts < shots)
    if len(short):
        c = short[0]
        more = f" (and {len(short) - 1} more class{'es' if len(short) > 2 else ''})" if len(short) > 1 else ""
        raise UsageError(f"--shots {shots}: class '{class_names[classes[c]]}' has {counts[c]} training {units}{more}; "
                         "use fewer --shots")
    rng = np.random.default_rng(seed)
    drawn = np.concatenate([rng.permutation(per_class[c])[:shots] for c in classes])
    idx = np.flatnonzero(np.isin(unit, drawn) & np.isin(src.labels, classes))
    return dataclasses.replace(src, keys=[src.keys[i] for i in idx], labels=src.labels[idx])


__all__ = ["clip_key_map", "clip_keys", "clip_side", "clip_videos", "shots_subset"]
