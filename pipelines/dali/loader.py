"""``build_loader(..., backend="dali")``: the same :class:`~headcam.pipelines.loader.Batch` from a DALI pipeline.

``device="cuda[:i]"``: JPEGs decoded on the GPU (``mixed``), every op on the GPU, magnification by
``fn.experimental.remap``. ``device="cpu"``: ``device_id=None``, DALI on CPU threads (``workers``
of them); magnification is GPU-only there and is refused with a message that says so, as are
saliency fixations and temporal pairs (see :data:`headcam.pipelines.dali.ops.UNSUPPORTED`).

Ranks use DALI's own ``shard_id``/``num_shards`` split; every rank runs ``(N // world) // B``
steps (train) so they stay in step. A corrupt JPEG stops a DALI pipeline (DALI cannot skip a
sample): the error says to check the dataset or use the torch backend, which skips and counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch

from headcam.console import UsageError
from headcam.pipelines.dali import ops
from headcam.pipelines.dali.pipelines import param_names, views_pipeline
from headcam.pipelines.loader import Batch
from headcam.pipelines.spec import AugmentSpec
from headcam.shards.dataset import Dataset


def _rank_world(rank: int | None, world: int | None) -> tuple[int, int]:
    dist = torch.distributed
    on = dist.is_available() and dist.is_initialized()
    return (rank if rank is not None else (dist.get_rank() if on else 0),
            world if world is not None else (dist.get_world_size() if on else 1))


class DaliLoader:
    """An epoch of :class:`Batch` es from DALI; same contract as :class:`headcam.pipelines.loader.Loader`,
    except that ``keys`` is empty (DALI's webdataset reader does not expose sample keys) and ``meta`` holds
    the drawn ``params`` per view but no per-sample metadata. Resume (``skip_batches``) re-runs and drops
    the skipped batches, since DALI's reader cannot seek."""

    def __init__(self, dataset: Dataset, split: str, spec: AugmentSpec, *, batch_size: int, n_views: int, size: int,
                 device: torch.device, workers: int, seed: int, rank: int, world: int, train: bool,
                 shuffle_buffer: int):
        self.spec, self.batch_size, self.n_views, self.size = spec, batch_size, n_views, size
        self.device, self.threads, self.seed = device, max(workers, 1), seed
        self.rank, self.world, self.train, self.shuffle_buffer = rank, world, train, shuffle_buffer
        self.paths = [str(p) for p in dataset.shards(split)]
        total = dataset.count(split)
        self.own = (total * (rank + 1)) // world - (total * rank) // world
        self.min_own = total // world
        self.epoch, self.skip_batches = 0, 0
        self.stats: Counter[str] = Counter()

    def __len__(self) -> int:
        return self.min_own // self.batch_size if self.train else math.ceil(self.own / self.batch_size)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def _pipeline(self):
        gpu = self.device.type == "cuda"
        seed = (self.seed * 1_000_003 + self.epoch * 1009 + self.rank) % (2**31 - 1)
        pipe = views_pipeline(
            paths=self.paths, index_paths=[p[:-4] + ".idx" for p in self.paths], spec=self.spec, size=self.size,
            n_views=self.n_views, shard_id=self.rank, num_shards=self.world, shuffle_buffer=self.shuffle_buffer,
            train=self.train, gpu=gpu, batch_size=self.batch_size, num_threads=self.threads,
            device_id=(self.device.index or 0) if gpu else None, seed=seed, prefetch_queue_depth=2)
        pipe.build()
        return pipe

    def __iter__(self) -> Iterator[Batch]:
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        names = param_names(self.spec)
        output_map = [f"view{i}" for i in range(self.n_views)] + ["label"]
        output_map += [f"{n}{i}" for i in range(self.n_views) for n in names]
        policy = LastBatchPolicy.DROP if self.train else LastBatchPolicy.PARTIAL
        try:
            it = DALIGenericIterator([self._pipeline()], output_map, reader_name="Reader",
                                     last_batch_policy=policy, auto_reset=False)
            for step, out in enumerate(it):
                if step >= len(self):
                    break
                if step < self.skip_batches:
                    continue
                data: dict[str, Any] = out[0]
                params = [{n: data[f"{n}{i}"] for n in names} for i in range(self.n_views)]
                views = [data[f"view{i}"].to(self.device) for i in range(self.n_views)]
                meta = {"epoch": self.epoch, "step": step, "params": params, "stats": {}, "backend": "dali"}
                yield Batch(views=views, label=data["label"].to(self.device).long().view(-1), keys=[], meta=meta)
        except RuntimeError as e:
            raise RuntimeError(f"DALI pipeline failed ({e}); a corrupt JPEG stops DALI: check the dataset with "
                               "`headcam-ingest inspect` or use backend='torch', which skips and counts them") from e


def build_dali_loader(dataset: Dataset, split: str, spec: AugmentSpec, *, batch_size: int, n_views: int, size: int,
                      device: str | torch.device, workers: int, seed: int, rank: int | None, world: int | None,
                      train: bool, temporal_window: int | None, shuffle_buffer: int) -> DaliLoader:
    device = torch.device(device)
    if temporal_window:
        raise UsageError(f"backend 'dali': {ops.UNSUPPORTED['temporal']}")
    if spec.needs_fixation and spec.fixation.mode == "saliency":
        raise UsageError(f"backend 'dali': {ops.UNSUPPORTED['saliency']}")
    if spec.magnification.enabled and device.type != "cuda":
        raise UsageError(f"backend 'dali' on CPU: {ops.UNSUPPORTED['magnification_cpu']}")
    rank, world = _rank_world(rank, world)
    loader = DaliLoader(dataset, split, spec, batch_size=batch_size, n_views=n_views, size=size, device=device,
                        workers=workers, seed=seed, rank=rank, world=world, train=train, shuffle_buffer=shuffle_buffer)
    if train and len(loader) == 0:
        raise UsageError(f"batch_size {batch_size} is larger than the {loader.min_own} samples per rank")
    return loader
