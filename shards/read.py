"""Reading a split: what to read, in which order, for which rank, and what to do with bad data.

Everything that reads samples back goes through here (the torch loader, the DALI loader's shard list,
the gallery, few-shot fine-tuning), so these rules exist once:

- :func:`select`: the shards of one or more splits, each with the number of its samples to read,
  optionally only the samples of a **key filter** (counted from the manifest: no tar is opened).
- :func:`rank_world`: this process's rank and world, from the arguments or the process group, and
  :func:`reader_ranks`: which of them divide a split.
- :class:`ReadErrors`: the one handler for unreadable shard data (warn, count, skip).
- :func:`read_samples` and :class:`OrderedStream`: every selected sample once, in shard and member
  order, optionally one rank's share and one DataLoader worker's batches (evaluation).
- :func:`clip_runs`: the one grouping of frames into their clips (a clip is a contiguous run of one
  ``clip`` id in one shard: the shard contract); :func:`temporal_pairs` and clip reading (``Selection.min_clip``:
  the unit read is then a clip of at least that many frames, counted from the manifest) are built on it.
- :func:`temporal_pairs`: a frame and a partner from its clip.

Shuffled, planned reading for training (:class:`headcam.shards.stream.SampleStream`) is built on these.
"""

from __future__ import annotations

import json
import math
import random
import struct
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import torch
import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_expander

from headcam.shards import schema
from headcam.shards.dataset import Dataset, DatasetError
from headcam.shards.location import open_shard


def rank_world(rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """``(rank, world)``: the values given, else this process's place in the ``torch.distributed`` process
    group, else ``(0, 1)``. The one place a default rank is resolved (both loaders, ``train.dist``)."""
    dist = torch.distributed
    on = dist.is_available() and dist.is_initialized()
    return (rank if rank is not None else (dist.get_rank() if on else 0),
            world if world is not None else (dist.get_world_size() if on else 1))


def reader_ranks(rank: int | None, world: int | None, *, train: bool) -> tuple[int, int]:
    """The ``(rank, world)`` a split is divided over. Training: always the process group's (ranks must take
    the same steps on disjoint data). Ordered reading: only when a rank is given, else the whole split
    (the kNN monitor reads its whole bank on rank 0 alone)."""
    return rank_world(rank, world) if train or rank is not None else (0, 1)


class ReadErrors:
    """The webdataset ``handler`` for unreadable shard data: warn, count in ``count``, skip, go on."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, exn: Exception) -> bool:
        self.count += 1
        warnings.warn(f"skipping unreadable shard data: {exn!r}", stacklevel=2)
        return True


@dataclass(frozen=True)
class Selection:
    """What to read: ``shards`` as (path, number of units to read there), shards with none left out,
    and the key filter (None: every sample of those shards). The unit is a sample, or with ``min_clip`` > 0
    a clip of at least ``min_clip`` frames (a list of :class:`RawSample`); ``short_clips`` clips of the
    selected shards are shorter and are skipped."""

    shards: tuple[tuple[str, int], ...]
    keys: frozenset[str] | None = None
    min_clip: int = 0
    short_clips: int = 0

    @property
    def count(self) -> int:
        return sum(n for _, n in self.shards)


def select(dataset: Dataset, splits: str | Sequence[str], keys: Iterable[str] | None = None,
           min_clip: int = 0) -> Selection:
    """The shards of ``splits`` (in the order given, each split's in name order); with ``keys``, only those
    samples, counted per shard from the manifest. A key not in these splits is a :class:`DatasetError`.
    ``min_clip`` > 0: the units are the clips of at least that many (selected) frames, counted per shard
    from the manifest's ``clip`` column; none that long is a :class:`DatasetError`."""
    split_names = [splits] if isinstance(splits, str) else list(splits)
    names = [p.name for split in split_names for p in dataset.shards(split)]
    if keys is None and not min_clip:
        return Selection(tuple((str(dataset.root / n), dataset.shard_counts[n]) for n in names))
    wanted = None if keys is None else frozenset(keys)
    man = dataset.manifest
    rows = man.filter(pc.is_in(man["shard"], value_set=pa.array(names, pa.string())))
    if wanted is not None:
        rows = rows.filter(pc.is_in(rows["key"], value_set=pa.array(sorted(wanted), pa.string())))
        if rows.num_rows != len(wanted):
            raise DatasetError(f"{dataset.root}: {len(wanted) - rows.num_rows} of the {len(wanted)} selected keys "
                               f"are not in split(s) {', '.join(sorted({n.split('-')[0] for n in names}))}")
    if not min_clip:
        per_shard = Counter(rows["shard"].to_pylist())
        return Selection(tuple((str(dataset.root / n), per_shard[n]) for n in names if per_shard[n]), wanted)
    lengths = _clip_lengths(rows)
    per_shard = Counter(shard for (shard, _), n in lengths.items() if n >= min_clip)
    if not per_shard:
        longest = max(lengths.values(), default=0)
        raise DatasetError(f"{dataset.root}: no clip of split(s) {', '.join(split_names)} holds {min_clip} frames "
                           f"(the longest holds {longest}); re-ingest with a larger --clip-len, or ask for fewer "
                           "frames or a smaller stride")
    short = sum(n < min_clip for n in lengths.values())
    return Selection(tuple((str(dataset.root / n), per_shard[n]) for n in names if per_shard[n]), wanted,
                     min_clip, short)


def _clip_lengths(rows: pa.Table) -> dict[tuple[str, Any], int]:
    """Frames per (shard, clip) of manifest ``rows``; a row without a clip (clip -1: images) is its own clip."""
    clips = [key if clip is None or clip < 0 else clip
             for key, clip in zip(rows["key"].to_pylist(), rows["clip"].to_pylist(), strict=True)]
    return dict(Counter(zip(rows["shard"].to_pylist(), clips, strict=True)))


@dataclass(frozen=True)
class RawSample:
    """One sample as stored (see DESIGN.md, the shard contract): ``jpg`` and ``sal`` (the
    ``.sal.png`` saliency map, None when absent) stay undecoded bytes; ``meta`` is the parsed
    ``KEY.json`` (source, pts, clip ...; empty when absent)."""

    key: str
    jpg: bytes | None
    sal: bytes | None
    label: int
    meta: dict[str, Any]

    @classmethod
    def from_wds(cls, raw: dict[str, Any]) -> RawSample:
        """From webdataset's member dict (``__key__``, ``jpg``, ``sal.png``, ``lbl``/``cls``, ``json``)."""
        return cls(key=raw["__key__"], jpg=raw.get(schema.MEMBER_IMAGE), sal=raw.get(schema.MEMBER_SALIENCY),
                   label=decode_label(raw),
                   meta=json.loads(raw[schema.MEMBER_META]) if schema.MEMBER_META in raw else {})


def decode_label(sample: dict[str, Any]) -> int:
    """The int64 label of a raw sample (``.lbl`` if present, else ASCII ``.cls``)."""
    if schema.MEMBER_LABEL_INT64 in sample:
        return struct.unpack("<q", sample[schema.MEMBER_LABEL_INT64])[0]
    return int(sample[schema.MEMBER_CLASS])


def _opened(sources: Iterable[dict[str, Any]], handler: ReadErrors) -> Iterator[dict[str, Any]]:
    """webdataset's ``url_opener`` with :func:`~headcam.shards.location.open_shard`: local paths and ``pipe:``
    commands through webdataset's ``gopen``, URLs through fsspec. A stream is closed once its tar is read."""
    for source in sources:
        url = source["url"]
        try:
            stream = open_shard(url)
        except Exception as exn:  # webdataset's handler contract: the handler decides, as in its url_opener
            if handler(exn):
                continue
            return
        try:
            yield {**source, "stream": stream}
        finally:
            stream.close()


def _tar_samples(sources: Iterable[dict[str, Any]], handler: ReadErrors) -> Iterator[dict[str, Any]]:
    """webdataset's ``tarfile_samples`` (members grouped into samples by key) over :func:`_opened` streams."""
    return group_by_keys(tar_file_expander(_opened(sources, handler), handler=handler), handler=handler)


tar_samples = wds.pipelinefilter(_tar_samples)


def read_stages(urls: list[str], on_error: ReadErrors, keys: frozenset[str] | None, min_clip: int = 0) -> list[Any]:
    """webdataset stages that yield :class:`RawSample` s: the members of ``urls`` (paths, URLs or ``pipe:``
    commands, see :mod:`headcam.shards.location`) grouped into samples, (key filter) only the samples of
    ``keys``, parsed; unreadable tars and unparsable samples go to ``on_error``. ``min_clip`` > 0: they
    yield clips instead, lists of the frames of one clip, those of at least ``min_clip`` frames only."""
    stages = [wds.SimpleShardList(urls), tar_samples(on_error)]
    if keys is not None:
        stages.append(wds.select(lambda raw: raw["__key__"] in keys))
    stages.append(wds.map(RawSample.from_wds, handler=on_error))
    if min_clip:
        stages.append(wds.pipelinefilter(_long_clips)(min_clip))
    return stages


def _long_clips(samples: Iterable[RawSample], min_clip: int) -> Iterator[list[RawSample]]:
    return (clip for clip in clip_runs(samples) if len(clip) >= min_clip)


def read_samples(selection: Selection, on_error: ReadErrors | None = None) -> Iterator[RawSample]:
    """Every sample (with ``selection.min_clip``: every long enough clip) of ``selection`` once, in shard and
    member order."""
    return iter(wds.DataPipeline(*read_stages([p for p, _ in selection.shards], on_error or ReadErrors(),
                                              selection.keys, selection.min_clip)))


class OrderedStream:
    """Every selected sample once, in shard and member order, for one rank and DataLoader worker.

    With a ``rank`` given, that rank's share (shards round-robin over ``world``); without one, the whole
    selection, whatever the process group (the kNN monitor reads its bank on rank 0 alone). Worker ``w``
    of ``workers`` reads batches ``w, w + workers, ...`` of ``batch_size`` samples, so a DataLoader's
    round-robin hands them out in order whatever the worker count. Errors are counted in ``errors``.
    """

    def __init__(self, selection: Selection, *, batch_size: int, rank: int | None = None, world: int | None = None):
        self.rank, self.world = reader_ranks(rank, world, train=False)
        self.selection = replace(selection, shards=selection.shards[self.rank::self.world])
        self.batch_size = batch_size
        self.errors = ReadErrors()

    def set_epoch(self, epoch: int) -> None:
        """Nothing to reshuffle: the order is the shards' (here so both streams take the same calls)."""

    def batches_per_worker(self, workers: int) -> list[int]:
        n_batches = math.ceil(self.selection.count / self.batch_size)
        return [len(range(w, n_batches, max(workers, 1))) for w in range(max(workers, 1))]

    def iter_slot(self, worker: int, workers: int) -> Iterator[RawSample]:
        """Worker ``worker``'s batches of the ordered stream, from the first (units: samples, or clips)."""
        for i, sample in enumerate(read_samples(self.selection, self.errors)):
            if (i // self.batch_size) % workers == worker:
                yield sample


def clip_of(sample: RawSample) -> Any:
    """The clip id of a frame (``KEY.json``'s ``clip``); a sample without one (images: -1) is a clip of its own."""
    clip = sample.meta.get("clip")
    return sample.key if clip is None or clip < 0 else clip


def clip_runs(samples: Iterable[RawSample]) -> Iterator[list[RawSample]]:
    """The frames of ``samples`` (in shard order) grouped into their clips: contiguous runs of one clip id
    (the shard contract: a clip's frames are consecutive in one shard). A run also ends where its first key comes
    back (a one-clip shard read twice in a row, as a planned epoch may), so no clip is ever read doubled."""
    clip: list[RawSample] = []
    for s in samples:
        if clip and (clip_of(s) != clip_of(clip[-1]) or s.key == clip[0].key):
            yield clip
            clip = []
        clip.append(s)
    if clip:
        yield clip


def temporal_pairs(samples: Iterable[RawSample], window: int, rng: random.Random
                   ) -> Iterator[tuple[RawSample, RawSample]]:
    """(frame, partner) for every frame: the partner is another frame of the same clip within ±``window``
    positions (both directions)."""
    for clip in clip_runs(samples):
        for i, s in enumerate(clip):
            near = [j for j in range(max(0, i - window), min(len(clip), i + window + 1)) if j != i]
            yield s, clip[rng.choice(near)] if near else s
