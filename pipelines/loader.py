"""``build_loader``: augmented view batches from a dataset, the one API trainers and eval use.

Every backend yields the same :class:`Batch`, so nothing in ``train/`` or ``eval/`` knows which
backend, reader or file format produced it (STYLE.md practice 9).

``build_loader(data, split, cfg)`` takes one frozen :class:`LoaderConfig` (the resolved recipe and every
loader setting), the same object for both backends and for evaluation. Which samples are read, in
which order, for which rank and worker, and what happens to unreadable shard data is decided in
``headcam.shards`` (:func:`~headcam.shards.read.select`, ``SampleStream``, ``OrderedStream``).

Torch backend data flow, per DataLoader worker; batches are formed inside the worker, so one
resume rule, :class:`headcam.shards.stream.WorkerPosition`, makes resume exact. Each stage hands
the next a typed record::

    RawSample: SampleStream slot (train: planned, equal per slot) | OrderedStream (train=False)
      -> row: (sample,), or (sample, partner) for temporal pairs: a frame within ±w of the same clip,
         or (clips: the stream's unit is a shard clip) the T frames of its window, ``clip_stride`` apart
      -> [pair shuffle buffer]  -> WorkerPosition.resume (drops the batches delivered before a resume)
      -> Collected: a batch of rows with JPEGs decoded (corrupt rows skipped, counted)
      -> ViewMaker.prepare (saliency PNG decoded if the recipe uses it; crop, flip, saliency follows;
         clips: all B·T frames at once, one draw per clip)
      -> WorkerBatch, finished by ViewMaker.finish in the CPU worker, or in the main process when
         ``device`` is CUDA (uint8 crops cross the process boundary, not float views)
      -> Batch(views, label, keys, meta=BatchMeta(...))

Random parameters of batch ``i`` of slot ``s`` come from ``numpy.random.default_rng((seed,
epoch, s, i))``: the same seed gives the same batches, on any device and after a resume. A clip's start
(temporal jitter) comes from ``random.Random(f"{seed}/{epoch}/{s}/clips")``, drawn in the slot's clip order.
"""

from __future__ import annotations

import io
import random
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from headcam.console import UsageError
from headcam.pipelines.batch import Batch, BatchMeta, ViewRecord
from headcam.pipelines.clips import as_clips, clip_window
from headcam.pipelines.loader_config import LoaderConfig
from headcam.pipelines.torch.views import MissingSaliencyError, PreparedView, ViewMaker
from headcam.shards.dataset import Dataset, DatasetError, open_dataset
from headcam.shards.read import OrderedStream, RawSample, Selection, select, temporal_pairs
from headcam.shards.stream import SampleStream, WorkerPosition

Row = tuple[RawSample, ...]  # one batch row: the sample, then its temporal partner if any; or a clip's T frames


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


class ViewBatches(torch.utils.data.IterableDataset):
    """:class:`WorkerBatch` es for this rank and DataLoader worker (see the module docstring for the stages)."""

    def __init__(self, stream: SampleStream | OrderedStream, maker: ViewMaker, cfg: LoaderConfig, *,
                 finish_in_worker: bool):
        self.stream, self.maker, self.cfg = stream, maker, cfg
        self.finish_in_worker = finish_in_worker
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches
        self.stream.set_epoch(epoch)

    def batches_per_worker(self, workers: int) -> list[int]:
        return self.stream.batches_per_worker(workers)

    def _rows(self, worker: int, workers: int, slot: int) -> Iterator[Row]:
        samples = self.stream.iter_slot(worker, workers)
        cfg = self.cfg
        if cfg.clip_frames:  # the stream's units are clips (Selection.min_clip)
            jitter = random.Random(f"{cfg.seed}/{self.epoch}/{slot}/clips") if cfg.train else None
            return (clip_window(clip, cfg.clip_frames, cfg.clip_stride, jitter) for clip in samples)
        window = cfg.temporal_window
        if not window:
            return ((s,) for s in samples)
        rng = random.Random(f"{self.cfg.seed}/{self.epoch}/{slot}/pairs")
        pairs = temporal_pairs(samples, window, rng)
        if not (self.cfg.train and self.cfg.shuffle_buffer > 1):
            return pairs
        return wds.shuffle(self.cfg.shuffle_buffer, initial=self.cfg.shuffle_buffer, rng=rng)(pairs)

    def __iter__(self) -> Iterator[WorkerBatch]:
        if torch.utils.data.get_worker_info() is not None:
            torch.set_num_threads(1)
        pos = WorkerPosition.current(self.skip_batches)
        slot = self.stream.rank * pos.workers + pos.worker
        rows = pos.resume(self._rows(pos.worker, pos.workers, slot), self.cfg.batch_size)
        last = None
        for index in range(pos.done, self.batches_per_worker(pos.workers)[pos.worker]):
            batch = self._collect(rows)
            if batch is None and not (self.cfg.train and last is not None):
                return
            if batch is None:  # train stream ran dry (corrupt samples): repeat, so steps stay equal
                batch = Collected(last.rows, Counter(padded=len(last.rows)))
            last = batch
            # in-order round-robin: this slot's batch ``index`` is the epoch's batch index * workers + slot
            yield self._make(batch, np.random.default_rng((self.cfg.seed, self.epoch, slot, index)),
                             step=index * pos.workers + pos.worker)

    def _collect(self, rows: Iterator[Row]) -> Collected | None:
        """Decode the next batch, skipping corrupt rows. Train: ``batch_size`` good rows, padded with
        repeats (counted) when the stream runs dry, so every rank takes the same number of steps.
        Eval: the next ``batch_size`` rows, minus the corrupt ones (batch boundaries stay fixed)."""
        train, batch_size = self.cfg.train, self.cfg.batch_size
        stats: Counter[str] = Counter()
        got: list[tuple[Decoded, ...]] = []
        errors_before = self.stream.errors.count
        consumed = 0
        while (len(got) if train else consumed) < batch_size:
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
        stats["read_errors"] += self.stream.errors.count - errors_before
        if not got:
            return None
        if train:
            stats["padded"] += batch_size - len(got)
            got += [got[i % len(got)] for i in range(batch_size - len(got))]
        return Collected(got, stats)

    def _make(self, batch: Collected, rng: np.random.Generator, step: int) -> WorkerBatch:
        stats, clip = batch.stats, self.cfg.clip_frames
        # the samples' views, then (temporal pairs) the partners'; clips: every frame, clip after clip, one draw a clip
        groups = [[d for row in batch.rows for d in row]] if clip else batch.columns()
        prepared: list[PreparedView] = []
        for group in groups:
            prepared += self.maker.prepare([d.image for d in group], self._saliency(group, stats), rng,
                                           clip_len=max(clip, 1))
        samples = [row[0].sample for row in batch.rows]
        partners = [row[1].sample for row in batch.rows] if self.cfg.temporal_window else None
        meta = BatchMeta(backend="torch", epoch=self.epoch, step=step, stats=dict(stats),
                         samples=[s.meta for s in samples],
                         partner_keys=None if partners is None else [p.key for p in partners],
                         partner_samples=None if partners is None else [p.meta for p in partners],
                         clip_keys=[[d.sample.key for d in row] for row in batch.rows] if clip else None,
                         clip_samples=[[d.sample.meta for d in row] for row in batch.rows] if clip else None)
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
        """The batched photometric stage on ``device``: the views, and how each was made when recording
        (clips: B×T×... views and records)."""
        finished = [self.maker.finish(v, device) for v in prepared]
        t = self.cfg.clip_frames
        fold = (lambda x: as_clips(x, t)) if t else (lambda x: x)
        records = ([ViewRecord(params={k: fold(v) for k, v in p.params.items()}, fixations=fold(fix))
                    for p, (_, fix) in zip(prepared, finished, strict=True)] if self.cfg.record_views else None)
        return [fold(x) for x, _ in finished], records


class Loader:
    """An epoch of :class:`Batch` es; ``len()`` = steps per epoch (equal on every rank when training).

    ``set_epoch(e, skip_batches=k)`` reseeds the shuffle and resumes after ``k`` batches already
    taken in epoch ``e``: the next iteration yields exactly the batches ``k ..`` of that epoch.
    ``stats`` accumulates counters over the loader's life: corrupt (skipped JPEGs; clips: a clip with one),
    missing_saliency (uniform fall-backs), padded (repeats to keep train steps equal), read_errors;
    short_clips (clips: the clips of the split too short for ``clip_frames`` at ``clip_stride``,
    skipped every epoch; counted from the manifest when the loader is built).
    """

    def __init__(self, batches: ViewBatches, workers: int, device: torch.device | str):
        self.batches, self.workers, self.device = batches, workers, torch.device(device)
        self.stats: Counter[str] = Counter()
        if batches.cfg.clip_frames:
            self.stats["short_clips"] = batches.stream.selection.short_clips

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


def build_loader(data: str | Path | Dataset, split: str | Sequence[str], cfg: LoaderConfig) -> Loader:
    """Augmented view batches of ``split`` (one split, or several read one after the other) as ``cfg`` says
    (see :class:`LoaderConfig`, :class:`Loader`, :class:`Batch`); ``backend="dali"`` returns a loader with the
    same contract. User mistakes raise :class:`~headcam.console.UsageError`."""
    if not isinstance(cfg, LoaderConfig):
        raise TypeError(f"build_loader takes a LoaderConfig (the resolved recipe is its augment), got "
                        f"{type(cfg).__name__}")
    try:
        dataset = data if isinstance(data, Dataset) else open_dataset(data)
        selection = select(dataset, split, cfg.keys, cfg.clip_span)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    if cfg.backend == "dali":
        from headcam.pipelines.dali.loader import build_dali_loader

        return build_dali_loader(selection, cfg)
    device = torch.device(cfg.device)
    maker = ViewMaker(cfg.augment, size=cfg.size, n_views=1 if cfg.temporal_window else cfg.n_views)
    try:
        stream, workers = _stream(selection, cfg)
        batches = ViewBatches(stream, maker, cfg, finish_in_worker=device.type == "cpu")
        loader = Loader(batches, workers, device)
        steps = len(loader)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    if cfg.train and steps == 0:
        raise UsageError(f"batch_size {cfg.batch_size} is larger than the {'clips' if cfg.clip_frames else 'samples'}"
                         f" each rank/worker slot gets in split '{split}'; use a smaller batch or fewer workers")
    if selection.short_clips and stream.rank == 0:
        print(f"headcam: skipping {selection.short_clips} clip(s) of split '{split}' shorter than {cfg.clip_span} "
              f"frames ({cfg.clip_frames} frames at stride {cfg.clip_stride})", file=sys.stderr)
    return loader


def _stream(selection: Selection, cfg: LoaderConfig) -> tuple[SampleStream | OrderedStream, int]:
    """The reader of ``selection`` and the DataLoader workers it can feed: training's planned shuffle needs
    a shard per (rank, worker) slot, so it takes the workers the shards allow and says so in one line."""
    if not cfg.train:
        return OrderedStream(selection, batch_size=cfg.batch_size, rank=cfg.rank, world=cfg.world), cfg.workers
    # a clip is the stream's unit: the buffer holds as many frames as it would hold single frames
    stream = SampleStream(selection, seed=cfg.seed, rank=cfg.rank, world=cfg.world, batch_size=cfg.batch_size,
                          shuffle_buffer=0 if cfg.temporal_window else cfg.shuffle_buffer // max(cfg.clip_frames, 1))
    workers = stream.usable_workers(cfg.workers)
    if workers < cfg.workers and stream.rank == 0:
        print(f"headcam: {len(selection.shards)} shard(s) for {stream.world} rank(s): using {workers} DataLoader "
              f"workers instead of {cfg.workers}", file=sys.stderr)
    return stream, workers


__all__ = ["Batch", "Loader", "LoaderConfig", "MissingSaliencyError", "PreparedView", "build_loader"]
