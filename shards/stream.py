"""Streaming a split with webdataset: one deterministic plan per epoch, equal length on every rank.

Why a plan: DDP hangs when one rank runs out of data before the others (webdataset#188, #303),
and exact resume needs to know what each worker has already read. :func:`plan_epoch` assigns
shards to (rank, worker) slots round-robin after a seeded per-epoch shuffle, and every slot
yields exactly ``samples_per_slot`` samples, the mean slot size: a slot with fewer samples
goes round its shards again, a slot with more stops early. So all ranks take the same number of
steps without talking to each other, an epoch holds as many samples as the split (truncating
every slot to the smallest one lost up to a third of CIFAR-10 at 32 slots), and the per-epoch
reshuffle spreads the repeats and the cuts over different shards. Fewer shards than slots is an
error, not a silent hang. Under a key filter (few-shot fine-tuning) a shard counts only its filtered
samples (the manifest knows them), so the slots, and the ranks' steps, stay equal just the same.

:class:`SampleStream` composes webdataset's own stages (``SimpleShardList``,
``tarfile_to_samples``, ``select``, ``shuffle``; see :mod:`headcam.shards.read`) with that plan; it yields
:class:`RawSample` s (bytes stay undecoded: decoding belongs to the augmentation backend).

Exact resume has one rule, :class:`WorkerPosition`: which slot a DataLoader worker plays after
``k`` batches and how many of that slot's batches it drops. :class:`SampleStream` applies it to its
samples; the torch loader (``headcam.pipelines.loader``) applies it to its own batch rows, after
the stages (temporal pairs, pair shuffle) that must replay the skipped part.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import webdataset as wds

from headcam.shards.dataset import DatasetError
from headcam.shards.read import RawSample, ReadErrors, Selection, read_stages, reader_ranks


@dataclass(frozen=True)
class EpochPlan:
    slots: list[list[str]]  # slot = rank * workers + worker -> shard paths
    samples_per_slot: int


def plan_epoch(shards: list[tuple[str, int]], *, epoch: int, seed: int, world: int, workers: int) -> EpochPlan:
    """Deterministic shard-to-slot assignment for one epoch; ``shards`` is (path, n_samples)."""
    n_slots = world * max(workers, 1)
    if len(shards) < n_slots:
        raise DatasetError(f"{len(shards)} shard(s) for {world} rank(s) x {max(workers, 1)} worker(s): need at least "
                           f"{n_slots}; re-ingest with a smaller --shard-size or use fewer workers")
    order = list(shards)
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


class SampleStream(torch.utils.data.IterableDataset):
    """Shuffled :class:`~headcam.shards.read.RawSample` s of a selection (:func:`~headcam.shards.read.select`:
    splits, optionally a key filter) for this rank and DataLoader worker, every slot the same number.

    ``skip_batches`` (of ``batch_size`` samples, e.g. from ``set_epoch``) resumes the current epoch
    after that many batches of a DataLoader that batches in order (see :class:`WorkerPosition`).
    Tar-level read errors are warned about, counted in ``self.errors`` and skipped.
    """

    def __init__(self, selection: Selection, *, seed: int = 0, epoch: int = 0, rank: int | None = None,
                 world: int | None = None, shuffle_buffer: int = 1000, skip_batches: int = 0, batch_size: int = 1):
        self.selection = selection
        self.seed, self.epoch = seed, epoch
        self.rank, self.world = reader_ranks(rank, world, train=True)
        self.shuffle_buffer = shuffle_buffer
        self.skip_batches, self.batch_size = skip_batches, batch_size
        self.errors = ReadErrors()

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def plan(self, workers: int) -> EpochPlan:
        return plan_epoch(list(self.selection.shards), epoch=self.epoch, seed=self.seed, world=self.world,
                          workers=workers)

    def usable_workers(self, workers: int) -> int:
        """``workers``, or fewer when this selection has too few shards to give each (rank, worker) slot one;
        too few shards for the ranks themselves is a :class:`DatasetError`."""
        n = len(self.selection.shards)
        if n < self.world:
            raise DatasetError(f"{n} shard(s) for {self.world} rank(s): need at least {self.world}; re-ingest with "
                               "a smaller --shard-size or use fewer ranks")
        return min(workers, n // self.world)

    def batches_per_worker(self, workers: int) -> list[int]:
        """Full batches per DataLoader worker this epoch: the same for every worker and rank."""
        return [self.plan(workers).samples_per_slot // self.batch_size] * max(workers, 1)

    def __iter__(self) -> Iterator[RawSample]:
        pos = WorkerPosition.current(self.skip_batches)
        return pos.resume(self.iter_slot(pos.worker, pos.workers), self.batch_size)

    def iter_slot(self, worker: int, workers: int) -> Iterator[RawSample]:
        """All samples of slot (this rank, ``worker`` of ``workers``) this epoch, from the first: for
        callers that apply :class:`WorkerPosition` after stages of their own. Under a key filter only the
        filtered samples count, so every slot still yields ``samples_per_slot`` of them."""
        plan = self.plan(workers)
        slot = self.rank * workers + worker
        rng = random.Random(f"{self.seed}/{self.epoch}/{slot}")
        urls = _cycled(plan.slots[slot], dict(self.selection.shards), plan.samples_per_slot)
        stages = read_stages(urls, self.errors, self.selection.keys, self.selection.min_clip)
        if self.shuffle_buffer > 1:
            stages.append(wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng))
        return itertools.islice(wds.DataPipeline(*stages), plan.samples_per_slot)
