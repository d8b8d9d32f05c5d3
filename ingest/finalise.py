"""Phase 2 of a video ingest: staged videos -> streams, segments, clips, the shard plan, manifest.

Bounded memory: per-frame metadata is held as small arrays; :mod:`headcam.ingest.merge` copies
image bytes from the staging tars one shard at a time (all shards, or one part's range of them).

- **Videos** come staged whole or in time-range parts (:mod:`headcam.ingest.split`); the parts of a
  video are laid end to end into one, so nothing below sees the difference.
- **Streams** (``--stream-by``): videos grouped by parent directory, by file, or all in one;
  streams in sorted order, videos of a stream in sorted file-name order. A video occupies
  [offset, offset + duration) on its stream's axis, duration = decoded span (last pts - first
  pts + one frame at the stream's average rate). Failed videos take no time on the axis.
- **Labels**: segment = floor(stream_time / seg_len), numbered globally: stream 0's segments
  first, then stream 1's, ... (ranges per stream in ``dataset.json``). Or (``--label-from parent``,
  :mod:`headcam.ingest.labels`) one class and split per video, which replace segments and the held-out rule.
- **Clips**: each (video, segment) run of sampled frames is cut into clips of ``clip_len``
  consecutive frames (the last one may be shorter); clip ids count up in stream/time order.
- **Held-out split**: inside every segment, clips in time order, the ``val_every``-th, 2x-th,
  ... clip (1-based) goes to ``val``; whole clips only, so near-duplicates never straddle splits.
  Or (``val_tail`` = F > 0) the last round(F·n) of each segment's n clips: one whole time range per
  segment, so held-out frames sit seconds, not one clip, away from the training frames of their class.
- **Order**: clips in a seeded global shuffle; frames of a clip in time order; shards of about
  ``shard_size`` samples, a clip never split. While a split has at least 2 clips, a shard holds at
  most ceil(clips/2) of them, so every split has >= 2 shards (two DataLoader workers have work).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from headcam.ingest.engine import ShardJob
from headcam.ingest.split import duration as parts_duration
from headcam.ingest.staged import SampleSpec, load_unit_index
from headcam.shards import schema
from headcam.shards.dataset import manifest_table


@dataclass
class StagedVideo:
    """One successfully staged video, with its frames as arrays (from one unit, or the parts of a split)."""

    path: str
    key: str
    stream: str
    duration: float
    summary: dict[str, Any]
    tars: list[str] = field(repr=False)  # the staging tars of its units
    tar: np.ndarray = field(repr=False)  # per sampled frame, index into ``tars``
    pts: np.ndarray = field(repr=False)  # per sampled frame, seconds
    wh: np.ndarray = field(repr=False)  # (n, 2)
    jpg: np.ndarray = field(repr=False)  # (n, 2) offset, size in its staging tar
    sal: np.ndarray | None = field(repr=False)  # (n, 2) or None without saliency
    video_index: int = -1  # position in its stream
    offset: float = 0.0  # start on the stream axis

    @classmethod
    def load(cls, staging_dir: Path, key: str, units: list[dict[str, Any]], stream: str) -> StagedVideo:
        """From the journal records of its units in time order (:func:`headcam.ingest.split.video_records`);
        a part without samples has nothing to read."""
        docs = [load_unit_index(staging_dir, u["key"]) for u in units if u["n_samples"]]
        fr = [f for d in docs for f in d["frames"]]
        has_sal = bool(fr) and fr[0]["sal"] is not None
        summary = {k: v for k, v in docs[0].items() if k != "frames"}
        return cls(path=summary["path"], key=key, stream=stream, duration=parts_duration(units), summary=summary,
                   tars=[str(staging_dir / f"{d['key']}.tar") for d in docs],
                   tar=np.repeat(np.arange(len(docs)), [len(d["frames"]) for d in docs]),
                   pts=np.array([f["pts"] for f in fr], np.float64),
                   wh=np.array([(f["w"], f["h"]) for f in fr], np.int64).reshape(-1, 2),
                   jpg=np.array([f["jpg"] for f in fr], np.int64).reshape(-1, 2),
                   sal=np.array([f["sal"] for f in fr], np.int64).reshape(-1, 2) if has_sal else None)


def stream_of(path: str, stream_by: str) -> str:
    """The stream (child) a video belongs to: its parent directory, itself, or the one stream."""
    if stream_by == "parent":
        return os.path.dirname(path)
    if stream_by == "file":
        return path
    if stream_by == "one":
        return "all"
    raise ValueError(f"unknown stream grouping {stream_by!r}")


@dataclass
class Clip:
    id: int
    video: int  # index into the plan's videos
    start: int  # first sampled-frame index in the video
    length: int
    label: int
    split: str = "train"


@dataclass
class Plan:
    videos: list[StagedVideo]
    clips: list[Clip]
    class_ranges: list[dict[str, Any]]  # per stream: name, first class, n_classes, duration, videos
    n_classes: int
    shards: dict[str, list[list[int]]]  # split -> shards -> clip ids, in write order

    def shard_names(self) -> list[tuple[str, str, list[int]]]:
        return [(split, schema.shard_name(split, i), ids) for split, groups in sorted(self.shards.items())
                for i, ids in enumerate(groups)]


def _segments(videos: list[StagedVideo], seg_len: float) -> tuple[list[np.ndarray], list[dict[str, Any]], int]:
    """Lay videos on their streams' axes; global segment label per frame, and ranges per stream."""
    by_stream: dict[str, list[StagedVideo]] = {}
    for v in videos:
        by_stream.setdefault(v.stream, []).append(v)
    labels: dict[str, np.ndarray] = {}
    ranges, base = [], 0
    for name in sorted(by_stream):
        members = sorted(by_stream[name], key=lambda v: (os.path.basename(v.path), v.path))
        offset, top = 0.0, -1
        for i, v in enumerate(members):
            v.video_index, v.offset = i, offset
            local = np.floor((offset + v.pts) / seg_len).astype(np.int64)
            labels[v.key] = base + local
            top = max(top, int(local.max()) if len(local) else -1)
            offset += v.duration
        n = top + 1
        ranges.append({"stream": name, "first_class": base, "n_classes": n, "duration": offset,
                       "videos": [v.path for v in members]})
        base += n
    return [labels[v.key] for v in videos], ranges, base


def _pack(clip_ids: list[int], lengths: dict[int, int], shard_size: int) -> list[list[int]]:
    """Greedy shards of about ``shard_size`` samples, whole clips, >= 2 shards once there are 2 clips."""
    cap = math.ceil(len(clip_ids) / 2) if len(clip_ids) >= 2 else 1
    shards: list[list[int]] = []
    cur: list[int] = []
    n = 0
    for cid in clip_ids:
        if cur and (n + lengths[cid] > shard_size or len(cur) >= cap):
            shards.append(cur)
            cur, n = [], 0
        cur.append(cid)
        n += lengths[cid]
    if cur:
        shards.append(cur)
    return shards


def plan(videos: list[StagedVideo], seg_len: float, clip_len: int, val_every: int, seed: int,
         shard_size: int, val_tail: float = 0.0, by_video: dict[str, tuple[int, str]] | None = None) -> Plan:
    """Everything about the output except the bytes: labels, clips, splits, shard assignment.
    ``by_video``: (class, split) per video path, instead of segment labels and the held-out rule."""
    # a stable order for clip ids: by stream, then position in the stream
    labels_list, ranges, n_classes = _segments(videos, seg_len)
    if by_video is not None:
        labels_list = [np.full(len(v.pts), by_video[v.path][0], np.int64) for v in videos]
    order = sorted(range(len(videos)), key=lambda i: (videos[i].stream, videos[i].video_index))
    videos = [videos[i] for i in order]
    labels_list = [labels_list[i] for i in order]
    clips: list[Clip] = []
    for vi, labels in enumerate(labels_list):
        start = 0
        while start < len(labels):
            end = start
            while end < len(labels) and end - start < clip_len and labels[end] == labels[start]:
                end += 1
            clips.append(Clip(id=len(clips), video=vi, start=start, length=end - start, label=int(labels[start])))
            start = end
    if by_video is not None:
        for c in clips:
            c.split = by_video[videos[c.video].path][1]
    elif val_tail > 0:
        by_segment: dict[int, list[Clip]] = {}
        for c in clips:  # clips are in time order within each segment
            by_segment.setdefault(c.label, []).append(c)
        for segment in by_segment.values():
            for c in segment[len(segment) - round(len(segment) * val_tail):]:
                c.split = "val"
    elif val_every > 0:
        seen: dict[int, int] = {}
        for c in clips:  # clips are in time order within each segment
            seen[c.label] = seen.get(c.label, 0) + 1
            if seen[c.label] % val_every == 0:
                c.split = "val"
    perm = np.random.default_rng(seed).permutation(len(clips))
    lengths = {c.id: c.length for c in clips}
    shards = {}
    for split in sorted({c.split for c in clips}):
        ids = [int(i) for i in perm if clips[i].split == split]
        shards[split] = _pack(ids, lengths, shard_size)
    return Plan(videos=videos, clips=clips, class_ranges=ranges, n_classes=n_classes, shards=shards)


def _frame_rows(p: Plan, clip: Clip, split: str, shard: str) -> Iterator[tuple[dict[str, Any], StagedVideo, int]]:
    v = p.videos[clip.video]
    for i in range(clip.start, clip.start + clip.length):
        pts = float(v.pts[i])
        row = {"key": f"{v.key}_{i:06d}", "split": split, "shard": shard, "label": clip.label, "source": v.path,
               "stream": v.stream, "video_index": v.video_index, "frame_index": i, "pts": pts,
               "stream_time": v.offset + pts, "clip": clip.id, "width": int(v.wh[i, 0]), "height": int(v.wh[i, 1]),
               "has_saliency": v.sal is not None}
        yield row, v, i


def manifest(p: Plan) -> tuple[pa.Table, str]:
    """The manifest (shard order, then sample order inside each shard) and a fingerprint of it.

    Built shard by shard, so only one shard's rows exist as Python objects at a time. The
    fingerprint (SHA-1 over shard, key, label) identifies the sample assignment for resume.
    """
    tables, h = [], hashlib.sha1()
    for split, name, ids in p.shard_names():
        rows = [row for cid in ids for row, _, _ in _frame_rows(p, p.clips[cid], split, name)]
        h.update("".join(f"{name} {r['key']} {r['label']}\n" for r in rows).encode())
        tables.append(manifest_table(rows))
    return pa.concat_tables(tables) if tables else manifest_table([]), h.hexdigest()


def _specs(p: Plan, ids: list[int], split: str, shard: str) -> list[SampleSpec]:
    out = []
    for cid in ids:
        for row, v, i in _frame_rows(p, p.clips[cid], split, shard):
            meta = {k: row[k] for k in ("source", "stream", "video_index", "frame_index", "pts", "stream_time",
                                        "clip")}
            meta["segment"] = row["label"]
            sal = (int(v.sal[i, 0]), int(v.sal[i, 1])) if v.sal is not None else None
            out.append(SampleSpec(row["key"], v.tars[v.tar[i]], (int(v.jpg[i, 0]), int(v.jpg[i, 1])), sal,
                                  row["label"], meta))
    return out


def shard_jobs(p: Plan, which: range | None = None) -> Iterator[ShardJob]:
    """The plan's shards (those at positions ``which`` of :meth:`Plan.shard_names`, default all) with their
    samples' staged bytes, built one shard at a time (bounded memory)."""
    names = p.shard_names()
    for split, name, ids in (names if which is None else names[which.start:which.stop]):
        yield ShardJob(name, _specs(p, ids, split, name))
