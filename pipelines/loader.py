"""``build_loader``: augmented view batches from a dataset, the one API trainers and eval use.

Every backend yields the same :class:`Batch`, so nothing in ``train/`` or ``eval/`` knows which
backend, reader or file format produced it (STYLE.md practice 9).

Torch backend data flow, per DataLoader worker; batches are formed inside the worker, so one
resume rule, :class:`headcam.shards.stream.WorkerPosition`, makes resume exact. Each stage hands
the next a typed record::

    RawSample: SampleStream slot (train: planned, equal per slot) | shards in name order (train=False)
      -> row: (sample,), or (sample, partner) for temporal pairs: a frame within ±w of the same clip
      -> [pair shuffle buffer]  -> WorkerPosition.resume (drops the batches delivered before a resume)
      -> Collected: a batch of rows with JPEGs decoded (corrupt rows skipped, counted)
      -> ViewMaker.prepare (saliency PNG decoded if the recipe uses it; crop, flip, saliency follows)
      -> WorkerBatch, finished by ViewMaker.finish in the CPU worker, or in the main process when
         ``device`` is CUDA (uint8 crops cross the process boundary, not float views)
      -> Batch(views, label, keys, meta=BatchMeta(...))

Random parameters of batch ``i`` of slot ``s`` come from ``numpy.random.default_rng((seed,
epoch, s, i))``: the same seed gives the same batches, on any device and after a resume.
"""

from __future__ import annotations

import io
import math
import random
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from headcam.console import UsageError
from headcam.pipelines.batch import Batch, BatchMeta, ViewRecord
from headcam.pipelines.spec import AugmentSpec, resolve_spec
from headcam.pipelines.torch.views import MissingSaliencyError, PreparedView, ViewMaker
from headcam.shards.dataset import Dataset, DatasetError, open_dataset
from headcam.shards.stream import RawSample, SampleStream, WorkerPosition

BACKENDS = ("torch", "dali")

Row = tuple[RawSample, ...]  # what one batch row is made from: the sample, then its temporal partner if any


@dataclass(frozen=True)
class Decoded:
    """One frame of a batch row with its JPEG decoded (its saliency PNG stays bytes until a recipe needs it)."""

    sample: RawSample
    image: torch.Tensor  # uint8 3×H×W


@dataclass
class Collected:
    """One batch's rows, decoded, before augmentation; ``stats`` counts the data problems met."""

    rows: list[tuple[Decoded, ...]]
    stats: Counter[str]

    def columns(self) -> list[list[Decoded]]:
        """The samples, then (temporal pairs) their partners: one column per group of views."""
        return [list(col) for col in zip(*self.rows, strict=True)]


@dataclass
class WorkerBatch:
    """One batch as a DataLoader worker hands it to the main process. It is pickled across the process
    boundary, so it holds tensors, keys and the samples' small ``KEY.json`` dicts, never image bytes:
    finished ``views`` from a CPU worker, or uint8 ``prepared`` crops for the main process to finish
    on its device (CUDA). ``meta.views`` is filled in where the views are finished."""

    keys: list[str]
    label: torch.Tensor
    meta: BatchMeta
    views: list[torch.Tensor] | None = None
    prepared: list[PreparedView] | None = None

    def pin_memory(self) -> WorkerBatch:
        """Called by the DataLoader (``pin_memory=True``, CUDA): page-locked label and crops copy faster."""
        prepared = (None if self.prepared is None
                    else [replace(v, pixels=v.pixels.pin_memory()) for v in self.prepared])
        return replace(self, label=self.label.pin_memory(), prepared=prepared)


def _decode(data: bytes | None, mode: str) -> np.ndarray | None:
    """PIL decoding (torchvision's decoders are deprecated from 0.29); truncated or bad data -> None."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert(mode))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def decode_image(data: bytes | None) -> torch.Tensor | None:
    """RGB uint8 3×H×W, or None if the JPEG is missing or corrupt."""
    arr = _decode(data, "RGB")
    return None if arr is None else torch.from_numpy(arr.copy()).permute(2, 0, 1)


def decode_saliency(data: bytes | None) -> torch.Tensor | None:
    """Saliency density h×w float in [0, 1], or None if missing or unreadable."""
    arr = _decode(data, "L")
    return None if arr is None else torch.from_numpy(arr.astype(np.float32) / 255)


def ordered_samples(paths: list[str], on_error) -> Iterator[RawSample]:
    """Every sample of ``paths`` once, in shard and member order (evaluation, feature extraction)."""
    raws = wds.DataPipeline(wds.SimpleShardList(paths), wds.tarfile_to_samples(handler=on_error))
    return map(RawSample.from_wds, raws)


def temporal_pairs(samples: Iterator[RawSample], window: int, rng: random.Random
                   ) -> Iterator[tuple[RawSample, RawSample]]:
    """(frame, partner) for every frame: the partner is another frame of the same clip within ±``window``
    positions (both directions). Clips are contiguous runs of equal ``meta["clip"]`` (the shard contract)."""
    def flush(clip: list[RawSample]):
        for i, s in enumerate(clip):
            near = [j for j in range(max(0, i - window), min(len(clip), i + window + 1)) if j != i]
            yield s, clip[rng.choice(near)] if near else s

    def clip_of(s: RawSample) -> Any:
        return s.meta.get("clip", s.key)

    clip: list[RawSample] = []
    for s in samples:
        if clip and clip_of(s) != clip_of(clip[-1]):
            yield from flush(clip)
            clip = []
        clip.append(s)
    yield from flush(clip)


class ViewBatches(torch.utils.data.IterableDataset):
    """:class:`WorkerBatch` es for this rank and DataLoader worker (see the module docstring for the stages)."""

    def __init__(self, dataset: Dataset, split: str, maker: ViewMaker, *, batch_size: int, train: bool, seed: int,
                 rank: int | None, world: int | None, shuffle_buffer: int, temporal_window: int | None,
                 finish_in_worker: bool, record_views: bool):
        self.dataset, self.split, self.maker = dataset, split, maker
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.temporal_window, self.shuffle_buffer = temporal_window, shuffle_buffer
        self.finish_in_worker, self.record_views = finish_in_worker, record_views
        self.explicit_rank = rank is not None
        self.stream = SampleStream(dataset, split, seed=seed, rank=rank, world=world,
                                   shuffle_buffer=0 if temporal_window else shuffle_buffer, shuffle_shards=train)
        self.epoch, self.skip_batches = 0, 0
        self.read_errors = 0

    # ------------------------------------------------------------------ sizes
    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches
        self.stream.set_epoch(epoch)

    def _eval_paths(self) -> list[str]:
        """train=False: all shards in name order (a rank's share, round-robin, when a rank was given)."""
        paths = [str(p) for p in self.dataset.shards(self.split)]
        return paths[self.stream.rank::self.stream.world] if self.explicit_rank else paths

    def _eval_samples(self, worker: int, workers: int) -> Iterator[RawSample]:
        """Worker w decodes batches w, w + workers, ... of the ordered stream, so the DataLoader's
        round-robin hands them out in shard order whatever the worker count."""
        for i, sample in enumerate(ordered_samples(self._eval_paths(), self._on_error)):
            if (i // self.batch_size) % workers == worker:
                yield sample

    def batches_per_worker(self, workers: int) -> list[int]:
        workers = max(workers, 1)
        if self.train:
            per_slot = self.stream.plan(workers).samples_per_slot
            return [per_slot // self.batch_size] * workers
        total = sum(self.dataset.shard_counts[Path(p).name] for p in self._eval_paths())
        n_batches = math.ceil(total / self.batch_size)
        return [len(range(w, n_batches, workers)) for w in range(workers)]

    # ------------------------------------------------------------------ iteration
    def _on_error(self, exn: Exception) -> bool:
        self.read_errors += 1
        warnings.warn(f"skipping unreadable shard data: {exn!r}", stacklevel=2)
        return True

    def _rows(self, worker: int, workers: int, slot: int) -> Iterator[Row]:
        samples = self.stream.iter_slot(worker, workers) if self.train else self._eval_samples(worker, workers)
        if not self.temporal_window:
            return ((s,) for s in samples)
        rng = random.Random(f"{self.seed}/{self.epoch}/{slot}/pairs")
        pairs = temporal_pairs(samples, self.temporal_window, rng)
        if not (self.train and self.shuffle_buffer > 1):
            return pairs
        return wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)(pairs)

    def __iter__(self) -> Iterator[WorkerBatch]:
        if torch.utils.data.get_worker_info() is not None:
            torch.set_num_threads(1)
        pos = WorkerPosition.current(self.skip_batches)
        slot = self.stream.rank * pos.workers + pos.worker
        rows = pos.resume(self._rows(pos.worker, pos.workers, slot), self.batch_size)
        last = None
        for index in range(pos.done, self.batches_per_worker(pos.workers)[pos.worker]):
            batch = self._collect(rows)
            if batch is None and not (self.train and last is not None):
                return
            if batch is None:  # train stream ran dry (corrupt samples): repeat, so steps stay equal
                batch = Collected(last.rows, Counter(padded=len(last.rows)))
            last = batch
            # in-order round-robin: this slot's batch ``index`` is the epoch's batch index * workers + slot
            yield self._make(batch, np.random.default_rng((self.seed, self.epoch, slot, index)),
                             step=index * pos.workers + pos.worker)

    def _collect(self, rows: Iterator[Row]) -> Collected | None:
        """Decode the next batch, skipping corrupt rows. Train: ``batch_size`` good rows, padded with
        repeats (counted) when the stream runs dry, so every rank takes the same number of steps.
        Eval: the next ``batch_size`` rows, minus the corrupt ones (batch boundaries stay fixed)."""
        stats: Counter[str] = Counter()
        got: list[tuple[Decoded, ...]] = []
        errors_before = self.read_errors + self.stream.read_errors
        consumed = 0
        while (len(got) if self.train else consumed) < self.batch_size:
            row = next(rows, None)
            consumed += 1
            if row is None:
                break
            images = [decode_image(s.jpg) for s in row]
            if any(im is None for im in images):
                stats["corrupt"] += 1
                warnings.warn(f"skipping sample {row[0].key}: corrupt or missing JPEG", stacklevel=2)
                continue
            got.append(tuple(Decoded(s, im) for s, im in zip(row, images, strict=True)))
        stats["read_errors"] += self.read_errors + self.stream.read_errors - errors_before
        if not got:
            return None
        if self.train:
            stats["padded"] += self.batch_size - len(got)
            got += [got[i % len(got)] for i in range(self.batch_size - len(got))]
        return Collected(got, stats)

    def _make(self, batch: Collected, rng: np.random.Generator, step: int) -> WorkerBatch:
        stats, columns = batch.stats, batch.columns()
        prepared: list[PreparedView] = []
        for column in columns:  # the samples' views, then (temporal pairs) the partners'
            prepared += self.maker.prepare([d.image for d in column], self._saliency(column, stats), rng)
        samples = [d.sample for d in columns[0]]
        partners = [d.sample for d in columns[1]] if len(columns) > 1 else None
        meta = BatchMeta(backend="torch", epoch=self.epoch, step=step, stats=dict(stats),
                         samples=[s.meta for s in samples],
                         partner_keys=None if partners is None else [p.key for p in partners],
                         partner_samples=None if partners is None else [p.meta for p in partners])
        out = WorkerBatch(keys=[s.key for s in samples], meta=meta,
                          label=torch.tensor([s.label for s in samples], dtype=torch.int64))
        if self.finish_in_worker:
            out.views, meta.views = self.finish(prepared, torch.device("cpu"))
        else:
            out.prepared = prepared
        return out

    def _saliency(self, column: list[Decoded], stats: Counter[str]) -> list[torch.Tensor | None]:
        """Saliency maps when the recipe uses them (a missing one is counted: fixations fall back to uniform)."""
        if not self.maker.uses_saliency:
            return [None] * len(column)
        maps = [decode_saliency(d.sample.sal) for d in column]
        stats["missing_saliency"] += sum(m is None for m in maps)
        return maps

    def finish(self, prepared: list[PreparedView], device: torch.device
               ) -> tuple[list[torch.Tensor], list[ViewRecord] | None]:
        """The batched photometric stage on ``device``: the views, and how each was made when recording."""
        finished = [self.maker.finish(v, device) for v in prepared]
        records = ([ViewRecord(params=v.params, fixations=fix) for v, (_, fix) in zip(prepared, finished, strict=True)]
                   if self.record_views else None)
        return [x for x, _ in finished], records


class Loader:
    """An epoch of :class:`Batch` es; ``len()`` = steps per epoch (equal on every rank when training).

    ``set_epoch(e, skip_batches=k)`` reseeds the shuffle and resumes after ``k`` batches already
    taken in epoch ``e``: the next iteration yields exactly the batches ``k ..`` of that epoch.
    ``stats`` accumulates counters over the loader's life: corrupt (skipped JPEGs),
    missing_saliency (uniform fall-backs), padded (repeats to keep train steps equal), read_errors.
    """

    def __init__(self, batches: ViewBatches, workers: int, device: torch.device | str):
        self.batches, self.workers, self.device = batches, workers, torch.device(device)
        self.stats: Counter[str] = Counter()

    def __len__(self) -> int:
        return sum(self.batches.batches_per_worker(self.workers))

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.batches.set_epoch(epoch, skip_batches)

    def __iter__(self) -> Iterator[Batch]:
        loader = torch.utils.data.DataLoader(self.batches, batch_size=None, num_workers=self.workers,
                                             pin_memory=self.device.type == "cuda")
        missing = 0
        for got in loader:
            meta = got.meta
            self.stats.update(meta.stats)
            missing += meta.stats.get("missing_saliency", 0)
            views = got.views
            if got.prepared is not None:  # CUDA: finished here, on the device
                views, meta.views = self.batches.finish(got.prepared, self.device)
            yield Batch(views=views, label=got.label.to(self.device), keys=got.keys, meta=meta)
        if missing:
            warnings.warn(f"{missing} sample(s) had no saliency map: uniform fixations used", stacklevel=2)


def build_loader(data: str | Path | Dataset, split: str, recipe: str, *, batch_size: int, n_views: int = 1,
                 size: int = 224, backend: str = "torch", device: str | torch.device = "cpu", workers: int = 0,
                 seed: int = 0, rank: int | None = None, world: int | None = None, train: bool = True,
                 temporal_window: int | None = None, shuffle_buffer: int = 1000,
                 augment: AugmentSpec | dict[str, Any] | list[str] | None = None,
                 record_views: bool = False) -> Loader:
    """Augmented view batches of ``split`` under ``recipe`` (see :class:`Loader`, :class:`Batch`).

    ``train=True``: shuffled, full batches only, the same number of steps on every rank.
    ``train=False``: every sample once, shard order, last partial batch kept (recipe usually ``eval``).
    ``batch.views``: ``n_views`` global views at ``size``, then the recipe's ``local.n`` local crops at
    ``local.size`` (0: 96/224 of ``size``), in one list.
    ``temporal_window=w`` (needs ``n_views=2``): views[1] is another frame of views[0]'s clip
    within ±w sampled frames. ``augment`` changes the recipe key by key (a nested dict or ``key=value``
    list) or is the whole resolved spec. ``record_views=True`` fills ``batch.meta.views`` with each view's drawn
    parameters and fixations (tests, the gallery); off by default, so they are not computed or sent
    between processes for nothing. User mistakes raise :class:`~headcam.console.UsageError`.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}'; valid backends: {', '.join(BACKENDS)}")
    spec = resolve_spec(recipe, augment)
    if batch_size < 1 or n_views < 1 or size < 8:
        raise UsageError(f"batch_size and n_views must be >= 1 and size >= 8 (got {batch_size}, {n_views}, {size})")
    if temporal_window is not None and (temporal_window < 1 or n_views != 2 or spec.local.n):
        raise UsageError(f"temporal_window must be >= 1 and needs n_views=2 and no local crops (got {temporal_window}, "
                         f"{n_views}, local.n={spec.local.n})")
    try:
        dataset = data if isinstance(data, Dataset) else open_dataset(data)
        dataset.shards(split)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    if backend == "dali":
        from headcam.pipelines.dali.loader import build_dali_loader

        return build_dali_loader(dataset, split, spec, batch_size=batch_size, n_views=n_views, size=size,
                                 device=device, workers=workers, seed=seed, rank=rank, world=world, train=train,
                                 temporal_window=temporal_window, shuffle_buffer=shuffle_buffer,
                                 record_views=record_views)
    device = torch.device(device)
    maker = ViewMaker(spec, size=size, n_views=1 if temporal_window else n_views)
    batches = ViewBatches(dataset, split, maker, batch_size=batch_size, train=train, seed=seed, rank=rank, world=world,
                          shuffle_buffer=shuffle_buffer, temporal_window=temporal_window,
                          finish_in_worker=device.type == "cpu", record_views=record_views)
    loader = Loader(batches, workers, device)
    try:
        steps = len(loader)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    if train and steps == 0:
        raise UsageError(f"batch_size {batch_size} is larger than the samples each rank/worker slot gets in "
                         f"split '{split}'; use a smaller batch or fewer workers")
    return loader


__all__ = ["Batch", "Loader", "MissingSaliencyError", "PreparedView", "build_loader"]
