"""``build_loader(..., backend="dali")``: the same :class:`~headcam.pipelines.batch.Batch` from a DALI pipeline.

``device="cuda[:i]"``: JPEGs decoded on the GPU (``mixed``, only each view's region), every op on
the GPU, magnification by ``fn.experimental.remap``. ``device="cpu"``: ``device_id=None``, DALI on
CPU threads (``workers`` of them), each JPEG decoded once; magnification is GPU-only there and is
refused with a message that says so, as are saliency fixations and temporal pairs (see
:data:`headcam.pipelines.dali.ops.UNSUPPORTED`).

Keys and per-sample metadata come from the pipeline too: the reader's ``source_info``
(``shard.tar:offset:KEY.jpg``) gives the key, and the ``json`` member the sample's KEY.json, parsed
with one ``json.loads`` per batch. View parameters leave the pipeline only when ``record_views``.

Ranks use DALI's own ``shard_id``/``num_shards`` split; every rank runs ``(N // world) // B``
steps (train) so they stay in step. A corrupt JPEG stops a DALI pipeline (DALI cannot skip a
sample): the error says to check the dataset or use the torch backend, which skips and counts.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from headcam.console import UsageError
from headcam.pipelines.batch import Batch, BatchMeta, ViewRecord
from headcam.pipelines.dali import ops
from headcam.pipelines.dali.pipelines import output_names, recorded_names, views_pipeline
from headcam.pipelines.params import ViewPlan, view_plans
from headcam.pipelines.spec import AugmentSpec
from headcam.shards.dataset import Dataset


def _rank_world(rank: int | None, world: int | None) -> tuple[int, int]:
    dist = torch.distributed
    on = dist.is_available() and dist.is_initialized()
    return (rank if rank is not None else (dist.get_rank() if on else 0),
            world if world is not None else (dist.get_world_size() if on else 1))


def to_torch(tensors, device: torch.device) -> torch.Tensor:
    """A dense DALI TensorList (CPU or GPU) copied into a new torch tensor on ``device``."""
    from nvidia.dali.plugin.pytorch import feed_ndarray, to_torch_type

    dense = tensors.as_tensor()
    out = torch.empty(dense.shape(), dtype=to_torch_type[dense.dtype], device=device)
    stream = torch.cuda.current_stream(device) if device.type == "cuda" else None
    return feed_ndarray(dense, out, cuda_stream=stream)


def keys_and_samples(source, meta, n: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Sample keys from ``source_info`` (``shard.tar:offset:KEY.jpg``; keys are dot-free) and KEY.json dicts."""
    keys = [np.array(source[i]).tobytes().decode().rsplit(":", 1)[-1].split(".", 1)[0] for i in range(n)]
    samples = json.loads(b"[" + b",".join(np.array(meta[i]).tobytes() for i in range(n)) + b"]")
    return keys, samples


def view_records(outs: dict[str, Any], plans: list[ViewPlan], n: int) -> list[ViewRecord]:
    """Each view's parameters (``ViewParams`` names and dtypes) and fixations (B×2 long, or B×0)."""
    records = []
    cpu = torch.device("cpu")
    for i, plan in enumerate(plans):
        p = {name: to_torch(outs[f"{name}{i}"], cpu)[:n] for name in ops.PARAMS}
        p = {k: v if v.dtype == torch.bool else v.long() if k == "jitter_order" else v.double() for k, v in p.items()}
        fix = (to_torch(outs[f"fixations{i}"], cpu)[:n].long() if "fixations" in recorded_names(plan.spec)
               else torch.zeros((n, 0), dtype=torch.long))
        records.append(ViewRecord(params=p, fixations=fix))
    return records


class DaliLoader:
    """An epoch of :class:`Batch` es from DALI; the same contract as the torch backend's loader.
    Resume (``skip_batches``) re-runs and drops the skipped batches, since DALI's reader cannot seek."""

    def __init__(self, dataset: Dataset, split: str, spec: AugmentSpec, *, batch_size: int, n_views: int, size: int,
                 device: torch.device, workers: int, seed: int, rank: int, world: int, train: bool,
                 shuffle_buffer: int, record_views: bool):
        self.spec, self.batch_size, self.n_views, self.size = spec, batch_size, n_views, size
        self.device, self.threads, self.seed = device, max(workers, 1), seed
        self.rank, self.world, self.train, self.shuffle_buffer = rank, world, train, shuffle_buffer
        self.record_views = record_views
        self.plans = view_plans(spec, size, n_views)
        self.paths = [str(p) for p in dataset.shards(split)]
        total = dataset.count(split)
        self.own = (total * (rank + 1)) // world - (total * rank) // world
        self.min_own = total // world
        self.epoch, self.skip_batches = 0, 0
        self.stats: Counter[str] = Counter()
        self._pipe = None  # kept after an epoch, so its end does not wait for DALI's prefetched batches

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
            train=self.train, gpu=gpu, record=self.record_views, batch_size=self.batch_size,
            num_threads=self.threads, device_id=(self.device.index or 0) if gpu else None, seed=seed,
            prefetch_queue_depth=2)
        pipe.build()
        return pipe

    def _batch(self, outs: dict[str, Any], step: int) -> Batch:
        n = self.batch_size if self.train else min(self.batch_size, self.own - step * self.batch_size)
        keys, samples = keys_and_samples(outs["source"], outs["json"], n)
        meta = BatchMeta(backend="dali", epoch=self.epoch, step=step, stats={}, samples=samples,
                         views=view_records(outs, self.plans, n) if self.record_views else None)
        views = [to_torch(outs[f"view{i}"], self.device)[:n] for i in range(len(self.plans))]
        label = to_torch(outs["label"], self.device)[:n].long().view(-1)
        return Batch(views=views, label=label, keys=keys, meta=meta)

    def __iter__(self) -> Iterator[Batch]:
        names = output_names(self.plans, self.record_views)
        try:
            # The previous epoch's pipeline goes only now: freeing it waits for the batches it had prefetched.
            self._pipe = None
            self._pipe = pipe = self._pipeline()
            for step in range(len(self)):
                outs = dict(zip(names, pipe.run(), strict=True))
                if step >= self.skip_batches:
                    yield self._batch(outs, step)
        except RuntimeError as e:
            raise RuntimeError(f"DALI pipeline failed ({e}); a corrupt JPEG stops DALI: check the dataset with "
                               "`headcam-ingest inspect` or use backend='torch', which skips and counts them") from e


def build_dali_loader(dataset: Dataset, split: str, spec: AugmentSpec, *, batch_size: int, n_views: int, size: int,
                      device: str | torch.device, workers: int, seed: int, rank: int | None, world: int | None,
                      train: bool, temporal_window: int | None, shuffle_buffer: int,
                      record_views: bool = False) -> DaliLoader:
    """A :class:`DaliLoader` after the checks a user can fail (see the module docstring);
    ``record_views`` adds each view's parameters and fixations to ``batch.meta.views``."""
    device = torch.device(device)
    if temporal_window:
        raise UsageError(f"backend 'dali': {ops.UNSUPPORTED['temporal']}")
    if spec.needs_fixation and spec.fixation.mode == "saliency":
        raise UsageError(f"backend 'dali': {ops.UNSUPPORTED['saliency']}")
    if spec.magnification.enabled and device.type != "cuda":
        raise UsageError(f"backend 'dali' on CPU: {ops.UNSUPPORTED['magnification_cpu']}")
    rank, world = _rank_world(rank, world)
    loader = DaliLoader(dataset, split, spec, batch_size=batch_size, n_views=n_views, size=size, device=device,
                        workers=workers, seed=seed, rank=rank, world=world, train=train, shuffle_buffer=shuffle_buffer,
                        record_views=record_views)
    if train and len(loader) == 0:
        raise UsageError(f"batch_size {batch_size} is larger than the {loader.min_own} samples per rank")
    return loader
