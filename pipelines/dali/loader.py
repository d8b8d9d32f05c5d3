"""``build_loader(..., backend="dali")``: the same :class:`~headcam.pipelines.batch.Batch` from a DALI pipeline.

``device="cuda[:i]"``: JPEGs decoded on the GPU (``mixed``, only each view's region), every op on
the GPU, magnification by ``fn.experimental.remap``. ``device="cpu"``: ``device_id=None``, DALI on
CPU threads (``workers`` of them), each JPEG decoded once; magnification is GPU-only there and is
refused with a message that says so, as are saliency fixations and temporal pairs (see
:data:`headcam.pipelines.dali.ops.UNSUPPORTED`).

Keys and per-sample metadata come from the pipeline too: the reader's ``source_info``
(``shard.tar:offset:KEY.jpg``) gives the key, and the ``json`` member the sample's KEY.json, parsed
with one ``json.loads`` per batch. View parameters leave the pipeline only when ``record_views``.

It takes the same :class:`~headcam.pipelines.loader_config.LoaderConfig` as the torch backend and the
shards :func:`headcam.shards.read.select` chose. Ranks use DALI's own ``shard_id``/``num_shards``
split; every rank runs ``(N // world) // B`` steps (train) so they stay in step. DALI's reader
cannot drop samples by key, so a key filter is refused (the torch backend reads it), and it reads local
files (DALI 2.4 also opens ``s3://`` itself, untested here), so a dataset at a URL or ``pipe:`` is refused too.
A corrupt JPEG stops a DALI pipeline (DALI cannot skip a sample): the error says to check the
dataset or use the torch backend, which skips and counts.
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
from headcam.pipelines.loader_config import LoaderConfig
from headcam.pipelines.params import ViewPlan, view_plans
from headcam.shards.location import is_remote
from headcam.shards.read import Selection, reader_ranks


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

    def __init__(self, selection: Selection, cfg: LoaderConfig):
        self.cfg, self.device = cfg, torch.device(cfg.device)
        self.rank, self.world = reader_ranks(cfg.rank, cfg.world, train=cfg.train)
        self.plans = view_plans(cfg.augment, cfg.size, cfg.n_views)
        self.paths = [p for p, _ in selection.shards]
        total = selection.count
        self.own = (total * (self.rank + 1)) // self.world - (total * self.rank) // self.world
        self.min_own = total // self.world
        self.epoch, self.skip_batches = 0, 0
        self.stats: Counter[str] = Counter()
        self._pipe = None  # kept after an epoch, so its end does not wait for DALI's prefetched batches
        self.workers = max(cfg.workers, 1)  # DALI CPU threads: the torch loader's count of workers

    def __len__(self) -> int:
        b = self.cfg.batch_size
        return self.min_own // b if self.cfg.train else math.ceil(self.own / b)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def _pipeline(self):
        cfg, gpu = self.cfg, self.device.type == "cuda"
        seed = (cfg.seed * 1_000_003 + self.epoch * 1009 + self.rank) % (2**31 - 1)
        pipe = views_pipeline(
            paths=self.paths, index_paths=[p[:-4] + ".idx" for p in self.paths], spec=cfg.augment, size=cfg.size,
            n_views=cfg.n_views, shard_id=self.rank, num_shards=self.world, shuffle_buffer=cfg.shuffle_buffer,
            train=cfg.train, gpu=gpu, record=cfg.record_views, batch_size=cfg.batch_size,
            num_threads=max(cfg.workers, 1), device_id=(self.device.index or 0) if gpu else None, seed=seed,
            prefetch_queue_depth=2)
        pipe.build()
        return pipe

    def _batch(self, outs: dict[str, Any], step: int) -> Batch:
        b = self.cfg.batch_size
        n = b if self.cfg.train else min(b, self.own - step * b)
        keys, samples = keys_and_samples(outs["source"], outs["json"], n)
        meta = BatchMeta(backend="dali", epoch=self.epoch, step=step, stats={}, samples=samples,
                         views=view_records(outs, self.plans, n) if self.cfg.record_views else None)
        views = [to_torch(outs[f"view{i}"], self.device)[:n] for i in range(len(self.plans))]
        label = to_torch(outs["label"], self.device)[:n].long().view(-1)
        return Batch(views=views, label=label, keys=keys, meta=meta)

    def __iter__(self) -> Iterator[Batch]:
        names = output_names(self.plans, self.cfg.record_views)
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


def build_dali_loader(selection: Selection, cfg: LoaderConfig) -> DaliLoader:
    """A :class:`DaliLoader` over ``selection`` after the checks a user can fail (see the module docstring)."""
    if cfg.temporal_window:
        raise UsageError(f"backend 'dali': {ops.UNSUPPORTED['temporal']}")
    if cfg.augment.needs_fixation and cfg.augment.fixation.mode == "saliency":
        raise UsageError(f"backend 'dali': {ops.UNSUPPORTED['saliency']}")
    if cfg.augment.magnification.enabled and torch.device(cfg.device).type != "cuda":
        raise UsageError(f"backend 'dali' on CPU: {ops.UNSUPPORTED['magnification_cpu']}")
    if selection.keys is not None:
        raise UsageError("backend 'dali' reads whole shards and cannot filter samples by key; use backend 'torch'")
    if any(is_remote(path) for path, _ in selection.shards):
        raise UsageError("backend 'dali' reads local shard files (with their .idx) only; for a dataset at a URL or "
                         "pipe: use backend 'torch', or copy the dataset to a local directory")
    loader = DaliLoader(selection, cfg)
    if cfg.train and len(loader) == 0:
        raise UsageError(f"batch_size {cfg.batch_size} is larger than the {loader.min_own} samples per rank")
    return loader
