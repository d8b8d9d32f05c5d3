"""``build_loader``: augmented view batches from a dataset, the one API trainers and eval use.

Every backend yields the same :class:`Batch`, so nothing in ``train/`` or ``eval/`` knows which
backend, reader or file format produced it (STYLE.md practice 9).

Torch backend data flow, per DataLoader worker (batches are formed inside the worker, so the
round-robin rule of :func:`headcam.shards.stream.worker_skip` makes resume exact)::

    SampleStream (train: planned, equal per slot)  |  shards in name order (train=False)
      -> [temporal pairs: frame + a frame within ±w of the same clip]
      -> [pair shuffle buffer]  -> skip (resume)
      -> decode JPEG (corrupt: skipped, counted) and saliency PNG
      -> ViewMaker.prepare (crop, flip, saliency follows)  -> ViewMaker.finish (on CPU workers,
         or in the main process when ``device`` is CUDA)

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from headcam.console import UsageError
from headcam.pipelines.spec import AugmentSpec, resolve_spec
from headcam.pipelines.torch.views import MissingSaliencyError, PreparedView, ViewMaker
from headcam.shards.dataset import Dataset, DatasetError, open_dataset
from headcam.shards.stream import SampleStream, logical_worker, raw_to_sample, worker_skip

BACKENDS = ("torch", "dali")


@dataclass
class Batch:
    """One step's data: ``views`` (n_views tensors B×3×H×W float32, normalised, on the loader's device),
    ``label`` int64 (B,), ``keys`` (B sample keys; temporal pairs: the query's), ``meta`` (epoch, step,
    drawn ``params`` and ``fixations`` per view, ``partner_keys`` for temporal pairs, ``stats`` delta)."""

    views: list[torch.Tensor]
    label: torch.Tensor
    keys: list[str]
    meta: dict[str, Any] = field(default_factory=dict)


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


def ordered_samples(paths: list[str], on_error) -> Iterator[dict[str, Any]]:
    """Every sample of ``paths`` once, in shard and member order (evaluation, feature extraction)."""
    for raw in wds.DataPipeline(wds.SimpleShardList(paths), wds.tarfile_to_samples(handler=on_error)):
        yield raw_to_sample(raw)


def temporal_pairs(samples: Iterator[dict[str, Any]], window: int, rng: random.Random
                   ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(frame, partner) for every frame: the partner is another frame of the same clip within ±``window``
    positions (both directions). Clips are contiguous runs of equal ``meta["clip"]`` (the shard contract)."""
    def flush(clip: list[dict[str, Any]]):
        for i, s in enumerate(clip):
            near = [j for j in range(max(0, i - window), min(len(clip), i + window + 1)) if j != i]
            yield s, clip[rng.choice(near)] if near else s

    clip: list[dict[str, Any]] = []
    for s in samples:
        if clip and s["meta"].get("clip", s["key"]) != clip[-1]["meta"].get("clip", clip[-1]["key"]):
            yield from flush(clip)
            clip = []
        clip.append(s)
    yield from flush(clip)


class ViewBatches(torch.utils.data.IterableDataset):
    """Batches of views for this rank and worker (see the module docstring for the stages)."""

    def __init__(self, dataset: Dataset, split: str, maker: ViewMaker, *, batch_size: int, train: bool, seed: int,
                 rank: int | None, world: int | None, shuffle_buffer: int, temporal_window: int | None,
                 finish_in_worker: bool):
        self.dataset, self.split, self.maker = dataset, split, maker
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.temporal_window, self.shuffle_buffer = temporal_window, shuffle_buffer
        self.finish_in_worker = finish_in_worker
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

    def _eval_samples(self, worker: int, workers: int) -> Iterator[dict[str, Any]]:
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

    def _items(self, worker: int, workers: int, slot: int) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        samples = self.stream.iter_slot(worker, workers) if self.train else self._eval_samples(worker, workers)
        if not self.temporal_window:
            return ((s, None) for s in samples)
        rng = random.Random(f"{self.seed}/{self.epoch}/{slot}/pairs")
        pairs = temporal_pairs(samples, self.temporal_window, rng)
        if not (self.train and self.shuffle_buffer > 1):
            return pairs
        return wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)(pairs)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        workers = info.num_workers if info else 1
        if info is not None:
            torch.set_num_threads(1)
        worker = logical_worker(info.id if info else 0, workers, self.skip_batches)
        slot = self.stream.rank * workers + worker
        n_batches = self.batches_per_worker(workers)[worker]
        skip = worker_skip(self.skip_batches, self.batch_size, worker, workers)
        items = self._items(worker, workers, slot)
        for _ in range(skip):
            next(items, None)
        first = skip // self.batch_size
        last = None
        for index in range(first, n_batches):
            batch = self._collect(items)
            if batch is None and not (self.train and last is not None):
                return
            if batch is None:  # train stream ran dry (corrupt samples): repeat, so steps stay equal
                batch = {"items": last["items"], "stats": Counter(padded=len(last["items"]))}
            last = batch
            yield self._make(batch, np.random.default_rng((self.seed, self.epoch, slot, index)), index)

    def _collect(self, items: Iterator) -> dict[str, Any] | None:
        """Decode the next batch, skipping corrupt items. Train: ``batch_size`` good items, padded with
        repeats (counted) when the stream runs dry, so every rank takes the same number of steps.
        Eval: the next ``batch_size`` items, minus the corrupt ones (batch boundaries stay fixed)."""
        stats: Counter[str] = Counter()
        got: list[tuple[dict[str, Any], torch.Tensor, dict[str, Any] | None, torch.Tensor | None]] = []
        errors_before = self.read_errors + self.stream.read_errors
        consumed = 0
        while (len(got) if self.train else consumed) < self.batch_size:
            item = next(items, None)
            consumed += 1
            if item is None:
                break
            sample, partner = item
            image = decode_image(sample["jpg"])
            other = decode_image(partner["jpg"]) if partner is not None else None
            if image is None or (partner is not None and other is None):
                stats["corrupt"] += 1
                warnings.warn(f"skipping sample {sample['key']}: corrupt or missing JPEG", stacklevel=2)
                continue
            got.append((sample, image, partner, other))
        stats["read_errors"] += self.read_errors + self.stream.read_errors - errors_before
        if not got:
            return None
        if self.train:
            stats["padded"] += self.batch_size - len(got)
            got += [got[i % len(got)] for i in range(self.batch_size - len(got))]
        return {"items": got, "stats": stats}

    def _make(self, batch: dict[str, Any], rng: np.random.Generator, index: int) -> dict[str, Any]:
        items, stats = batch["items"], batch["stats"]
        samples = [it[0] for it in items]
        sal = [decode_saliency(s["sal"]) for s in samples] if self.maker.uses_saliency else [None] * len(samples)
        if self.maker.uses_saliency:
            stats["missing_saliency"] += sum(m is None for m in sal)
        views = self.maker.prepare([it[1] for it in items], sal, rng)
        meta: dict[str, Any] = {"epoch": self.epoch, "index": index}
        if self.temporal_window:
            partners = [it[2] for it in items]
            psal = ([decode_saliency(p["sal"]) for p in partners] if self.maker.uses_saliency
                    else [None] * len(partners))
            views += self.maker.prepare([it[3] for it in items], psal, rng)
            meta["partner_keys"] = [p["key"] for p in partners]
            meta["partner_meta"] = [p["meta"] for p in partners]
        out: dict[str, Any] = {"keys": [s["key"] for s in samples], "meta": meta, "stats": dict(stats),
                               "label": torch.tensor([s["label"] for s in samples], dtype=torch.int64),
                               "sample_meta": [s["meta"] for s in samples]}
        if self.finish_in_worker:
            finished = [self.maker.finish(v) for v in views]
            out["views"], out["fixations"] = [f[0] for f in finished], [f[1] for f in finished]
            out["params"] = [v.params for v in views]
        else:
            out["prepared"] = views
        return out


class Loader:
    """An epoch of :class:`Batch` es; ``len()`` = steps per epoch (equal on every rank when training).

    ``set_epoch(e, skip_batches=k)`` reseeds the shuffle and resumes after ``k`` batches already
    taken in epoch ``e``: the next iteration yields exactly the batches ``k ..`` of that epoch.
    ``stats`` accumulates counters over the loader's life: corrupt (skipped JPEGs),
    missing_saliency (uniform fall-backs), padded (repeats to keep train steps equal), read_errors.
    """

    def __init__(self, batches: ViewBatches, workers: int, device: torch.device | str, spec: AugmentSpec):
        self.batches, self.workers, self.device, self.spec = batches, workers, torch.device(device), spec
        self.stats: Counter[str] = Counter()

    def __len__(self) -> int:
        return sum(self.batches.batches_per_worker(self.workers))

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.batches.set_epoch(epoch, skip_batches)

    def __iter__(self) -> Iterator[Batch]:
        loader = torch.utils.data.DataLoader(self.batches, batch_size=None, num_workers=self.workers,
                                             pin_memory=self.device.type == "cuda")
        missing = 0
        for step, raw in enumerate(loader, start=self.batches.skip_batches):
            self.stats.update(raw["stats"])
            missing += raw["stats"].get("missing_saliency", 0)
            if "prepared" in raw:
                finished = [self.batches.maker.finish(v, self.device) for v in raw["prepared"]]
                views, fixations = [f[0] for f in finished], [f[1] for f in finished]
                params = [v.params for v in raw["prepared"]]
            else:
                views = [v.to(self.device, non_blocking=True) for v in raw["views"]]
                fixations, params = raw["fixations"], raw["params"]
            meta = dict(raw["meta"], step=step, stats=raw["stats"], fixations=fixations, params=params,
                        sample_meta=raw["sample_meta"])
            yield Batch(views=views, label=raw["label"].to(self.device), keys=raw["keys"], meta=meta)
        if missing:
            warnings.warn(f"{missing} sample(s) had no saliency map: uniform fixations used", stacklevel=2)


def build_loader(data: str | Path | Dataset, split: str, recipe: str, *, batch_size: int, n_views: int = 1,
                 size: int = 224, backend: str = "torch", device: str | torch.device = "cpu", workers: int = 0,
                 seed: int = 0, rank: int | None = None, world: int | None = None, train: bool = True,
                 temporal_window: int | None = None, shuffle_buffer: int = 1000,
                 augment: AugmentSpec | dict[str, Any] | list[str] | str | Path | None = None) -> Loader:
    """Augmented view batches of ``split`` under ``recipe`` (see :class:`Loader`, :class:`Batch`).

    ``train=True``: shuffled, full batches only, the same number of steps on every rank.
    ``train=False``: every sample once, shard order, last partial batch kept (recipe usually ``eval``).
    ``temporal_window=w`` (needs ``n_views=2``): views[1] is another frame of views[0]'s clip
    within ±w sampled frames. ``augment`` overrides the recipe (spec, nested dict, ``key=value``
    list or YAML path). User mistakes raise :class:`~headcam.console.UsageError`.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}'; valid backends: {', '.join(BACKENDS)}")
    spec = resolve_spec(recipe, augment)
    if batch_size < 1 or n_views < 1 or size < 8:
        raise UsageError(f"batch_size and n_views must be >= 1 and size >= 8 (got {batch_size}, {n_views}, {size})")
    if temporal_window is not None and (temporal_window < 1 or n_views != 2):
        raise UsageError(f"temporal_window must be >= 1 and needs n_views=2 (got {temporal_window}, {n_views})")
    try:
        dataset = data if isinstance(data, Dataset) else open_dataset(data)
        dataset.shards(split)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    if backend == "dali":
        from headcam.pipelines.dali.loader import build_dali_loader

        return build_dali_loader(dataset, split, spec, batch_size=batch_size, n_views=n_views, size=size,
                                 device=device, workers=workers, seed=seed, rank=rank, world=world, train=train,
                                 temporal_window=temporal_window, shuffle_buffer=shuffle_buffer)
    device = torch.device(device)
    maker = ViewMaker(spec, size=size, n_views=1 if temporal_window else n_views)
    batches = ViewBatches(dataset, split, maker, batch_size=batch_size, train=train, seed=seed, rank=rank, world=world,
                          shuffle_buffer=shuffle_buffer, temporal_window=temporal_window,
                          finish_in_worker=device.type == "cpu")
    loader = Loader(batches, workers, device, spec)
    try:
        steps = len(loader)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    if train and steps == 0:
        raise UsageError(f"batch_size {batch_size} is larger than the samples each rank/worker slot gets in "
                         f"split '{split}'; use a smaller batch or fewer workers")
    return loader


__all__ = ["Batch", "Loader", "MissingSaliencyError", "PreparedView", "build_loader"]
