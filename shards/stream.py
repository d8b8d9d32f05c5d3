"""Streaming a split with webdataset: one deterministic plan per epoch, equal length on every rank.

Why a plan: DDP hangs when one rank runs out of data before the others (webdataset#188, #303),
and exact resume needs to know what each worker has already read. :func:`plan_epoch` assigns
shards to (rank, worker) slots round-robin after a seeded per-epoch shuffle, and every slot
yields exactly ``samples_per_slot`` samples, the mean slot size: a slot with fewer samples
goes round its shards again, a slot with more stops early. So all ranks take the same number of
steps without talking to each other, an epoch holds as many samples as the split (truncating
every slot to the smallest one lost up to a third of CIFAR-10 at 32 slots), and the per-epoch
reshuffle spreads the repeats and the cuts over different shards. Fewer shards than slots is an
error, not a silent hang.

:class:`SampleStream` composes webdataset's own stages (``SimpleShardList``,
``tarfile_to_samples``, ``shuffle``) with that plan; it yields :class:`RawSample` s (bytes stay
undecoded: decoding belongs to the augmentation backend).

Exact resume has one rule, :class:`WorkerPosition`: which slot a DataLoader worker plays after
``k`` batches and how many of that slot's batches it drops. :class:`SampleStream` applies it to its
samples; the torch loader (``headcam.pipelines.loader``) applies it to its own batch rows, after
the stages (temporal pairs, pair shuffle) that must replay the skipped part.
"""

from __future__ import annotations

import itertools
import json
import random
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import webdataset as wds

from headcam.shards import schema
from headcam.shards.dataset import Dataset, DatasetError


@dataclass(frozen=True)
class EpochPlan:
    slots: list[list[str]]  # slot = rank * workers + worker -> shard paths
    samples_per_slot: int


def plan_epoch(shards: list[tuple[str, int]], *, epoch: int, seed: int, world: int, workers: int,
               shuffle: bool = True) -> EpochPlan:
    """Deterministic shard-to-slot assignment for one epoch; ``shards`` is (path, n_samples)."""
    n_slots = world * max(workers, 1)
    if len(shards) < n_slots:
        raise DatasetError(f"{len(shards)} shard(s) for {world} rank(s) x {max(workers, 1)} worker(s): need at least "
                           f"{n_slots}; re-ingest with a smaller --shard-size or use fewer workers")
    order = list(shards)
    if shuffle:
        random.Random(f"{seed}/{epoch}").shuffle(order)
    slots = [order[i::n_slots] for i in range(n_slots)]
    per_slot = sum(n for _, n in shards) // n_slots
    return EpochPlan(slots=[[p for p, _ in s] for s in slots], samples_per_slot=per_slot)


def _cycled(paths: list[str], counts: dict[str, int], needed: int) -> list[str]:
    """``paths`` repeated often enough to hold ``needed`` samples."""
    have = sum(counts[p] for p in paths)
    return paths * max(1, -(-needed // max(have, 1)))


T = TypeVar("T")


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


@dataclass(frozen=True)
class WorkerPosition:
    """Where this DataLoader worker picks up the current epoch after ``batches_done`` batches.

    A DataLoader over an iterable dataset that batches inside its workers hands batches out
    round-robin (worker 0, 1, ..., 0, 1, ...). A resumed DataLoader asks worker 0 first, but batch
    ``batches_done`` is due from slot ``batches_done % workers``; so the workers rotate (``worker``
    is the slot this process plays) and each slot drops the ``done`` batches it delivered before.
    Exact for in-order loading; without a DataLoader worker it is worker 0 of 1.
    """

    worker: int  # the slot this process plays
    workers: int
    done: int  # batches of this slot delivered before the resume

    @classmethod
    def current(cls, batches_done: int) -> WorkerPosition:
        info = torch.utils.data.get_worker_info()
        workers = info.num_workers if info else 1
        worker = ((info.id if info else 0) + batches_done) % workers
        full, extra = divmod(batches_done, workers)
        return cls(worker=worker, workers=workers, done=full + (1 if worker < extra else 0))

    def resume(self, rows: Iterable[T], batch_size: int) -> Iterator[T]:
        """This slot's ``rows`` (``batch_size`` per batch) without the batches it already delivered."""
        return itertools.islice(rows, self.done * batch_size, None)


def decode_label(sample: dict[str, Any]) -> int:
    """The int64 label of a raw sample (``.lbl`` if present, else ASCII ``.cls``)."""
    if schema.MEMBER_LABEL_INT64 in sample:
        return struct.unpack("<q", sample[schema.MEMBER_LABEL_INT64])[0]
    return int(sample[schema.MEMBER_CLASS])


class SampleStream(torch.utils.data.IterableDataset):
    """:class:`RawSample` s of one split for this rank and DataLoader worker.

    ``skip_batches`` (of ``batch_size`` samples, e.g. from ``set_epoch``) resumes the current epoch
    after that many batches of a DataLoader that batches in order (see :class:`WorkerPosition`).
    Tar-level read errors are warned about, counted in ``self.read_errors`` and skipped.
    """

    def __init__(self, dataset: Dataset, split: str, *, seed: int = 0, epoch: int = 0, rank: int | None = None,
                 world: int | None = None, shuffle_buffer: int = 1000, shuffle_shards: bool = True,
                 skip_batches: int = 0, batch_size: int = 1):
        self.paths = [(str(p), dataset.shard_counts[p.name]) for p in dataset.shards(split)]
        self.seed, self.epoch = seed, epoch
        dist = torch.distributed
        initialised = dist.is_available() and dist.is_initialized()
        self.rank = rank if rank is not None else (dist.get_rank() if initialised else 0)
        self.world = world if world is not None else (dist.get_world_size() if initialised else 1)
        self.shuffle_buffer = shuffle_buffer
        self.shuffle_shards = shuffle_shards
        self.skip_batches, self.batch_size = skip_batches, batch_size
        self.read_errors = 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def plan(self, workers: int) -> EpochPlan:
        return plan_epoch(self.paths, epoch=self.epoch, seed=self.seed, world=self.world, workers=workers,
                          shuffle=self.shuffle_shards)

    def _on_error(self, exn: Exception) -> bool:
        self.read_errors += 1
        warnings.warn(f"skipping unreadable shard data: {exn!r}", stacklevel=2)
        return True

    def __iter__(self) -> Iterator[RawSample]:
        pos = WorkerPosition.current(self.skip_batches)
        return pos.resume(self.iter_slot(pos.worker, pos.workers), self.batch_size)

    def iter_slot(self, worker: int, workers: int) -> Iterator[RawSample]:
        """All samples of slot (this rank, ``worker`` of ``workers``) this epoch, from the first: for
        callers that apply :class:`WorkerPosition` after stages of their own."""
        plan = self.plan(workers)
        slot = self.rank * workers + worker
        rng = random.Random(f"{self.seed}/{self.epoch}/{slot}")
        urls = _cycled(plan.slots[slot], dict(self.paths), plan.samples_per_slot)
        stages = [wds.SimpleShardList(urls), wds.tarfile_to_samples(handler=self._on_error)]
        if self.shuffle_buffer > 1:
            stages.append(wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng))
        return map(RawSample.from_wds, itertools.islice(wds.DataPipeline(*stages), plan.samples_per_slot))

