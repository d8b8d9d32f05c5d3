"""Features of every sample of a split, from a frozen trunk or a baseline, cached on disk.

Why a cache: one extraction serves many readouts (adam, logreg, kNN, other protocols over the
same split), and extraction is the expensive part. A cache entry is keyed by the model's
identity hash, the dataset (resolved path + manifest bytes), the split, the view size and the eval
view's whole spec (its resize filter included: a bilinear and a bicubic extraction never share an
entry), and stores the sample keys next to the features, so protocols select rows by key, never by
position.

Images come from the pipelines' loader with the ``eval`` recipe (:func:`eval_view`) and ``train=False``
(every sample once, fixed order, resize + centre crop + normalise live there). The trunk runs in eval mode
(BatchNorm uses and keeps its running statistics: SPEC §7), under ``inference_mode``; on CUDA in
bf16 autocast with channels_last, or the precision a probe protocol fixes (:func:`with_precision`).

:func:`view_features` is the other way in, for the probes that train on random views: one epoch's
random views of every training sample through the frozen trunk, never cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from headcam.console import progress
from headcam.eval.baselines import baseline_features
from headcam.eval.models import EvalModel
from headcam.pipelines.spec import AugmentSpec, resolve_spec
from headcam.shards.atomic import atomic_write_bytes
from headcam.shards.dataset import Dataset
from headcam.shards.schema import MANIFEST

CACHE_VERSION = 1


@dataclass
class Features:
    """Rows of one split: sample keys, labels and features, aligned."""

    keys: np.ndarray  # str
    labels: np.ndarray  # int64
    feats: np.ndarray  # float32, n x D
    stats: dict[str, Any] = field(default_factory=dict)  # loader counters (corrupt samples skipped, ...)
    cached: bool = False

    def select(self, keys: Iterable[str]) -> Features:
        """The rows with these keys, in this order (keys absent here are dropped)."""
        where = {k: i for i, k in enumerate(self.keys.tolist())}
        idx = np.array([where[k] for k in keys if k in where], dtype=np.int64)
        return Features(self.keys[idx], self.labels[idx], self.feats[idx], self.stats, self.cached)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


#: Autocast dtypes of a trunk's arithmetic on CUDA; ``fp32`` turns autocast off. CPU always runs fp32.
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


class FixedPrecision(torch.nn.Module):
    """A trunk that runs in one precision on CUDA whatever autocast its caller set: the probe protocols that
    reproduce a reference fix the reference's (fp32 for DINO's ``eval_linear.py``, fp16 autocast for MAE's)."""

    def __init__(self, trunk: torch.nn.Module, precision: str):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")
        self.trunk, self.precision = trunk, precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cuda":
            return self.trunk(x)
        dtype = PRECISIONS[self.precision]
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            return self.trunk(x.float() if dtype is None else x)


def with_precision(model: EvalModel, precision: str) -> EvalModel:
    """``model`` whose trunk runs in ``precision`` on CUDA; bf16 (the default) leaves it as it is. The identity
    names the precision, so cached features of one precision never serve another."""
    if precision == "bf16" or model.trunk is None:
        return model
    return dataclasses.replace(model, trunk=FixedPrecision(model.trunk, precision),
                               identity=f"{model.identity}:precision={precision}")


def prepare_trunk(trunk: torch.nn.Module, device: str) -> torch.nn.Module:
    """Frozen trunk on ``device`` in eval mode (channels_last on CUDA, a 4-D layout: a video trunk, whose tubelet
    kernel is 5-D, keeps its own)."""
    trunk = trunk.to(device).eval()
    if device.startswith("cuda") and all(p.ndim != 5 for p in trunk.parameters()):
        trunk = trunk.to(memory_format=torch.channels_last)
    return trunk


@torch.inference_mode()
def trunk_features(trunk: torch.nn.Module, views: torch.Tensor) -> torch.Tensor:
    """Pooled features of one batch (float32, CPU); bf16 autocast + channels_last on CUDA."""
    device = next(trunk.parameters()).device
    views = views.to(device, non_blocking=True)
    if device.type == "cuda":
        views = views.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = trunk(views)
    else:
        out = trunk(views)
    return out.float().cpu()


def extract(model: EvalModel, batches: Iterable[Any], device: str = "cpu", total: int | None = None,
            desc: str = "features") -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, labels, features) over batches that have ``views[0]``, ``label`` and ``keys``."""
    trunk = prepare_trunk(model.trunk, device) if model.kind == "network" else None
    keys: list[str] = []
    labels, feats = [], []
    for batch in progress(batches, desc=desc, total=total, unit="batch"):
        views = batch.views[0]
        feats.append(trunk_features(trunk, views).numpy() if trunk is not None
                     else baseline_features(model.kind, views))
        labels.append(batch.label.detach().cpu().numpy().astype(np.int64))
        keys += list(batch.keys)
    if not feats:
        return keys, np.zeros(0, dtype=np.int64), np.zeros((0, model.feat_dim or 0), dtype=np.float32)
    return keys, np.concatenate(labels), np.concatenate(feats).astype(np.float32)


def dataset_identity(dataset: Dataset) -> str:
    """Resolved path + hash of the manifest: a re-ingested dataset never reuses stale features."""
    digest = hashlib.sha256((dataset.root / MANIFEST).read_bytes()).hexdigest()
    return f"{dataset.root.resolve()}#{digest}"


def eval_view(interpolation: str = "bilinear", overrides: Iterable[str] = ()) -> AugmentSpec:
    """The ``eval`` recipe (the centre box of ``resize_ratio`` of the short side, resized to the view side) resized
    with ``interpolation`` (``bilinear`` or ``bicubic``, antialiased), then ``overrides``: a protocol's test view
    resizes as its reference's ``Resize(..., interpolation=...)`` does."""
    return resolve_spec("eval", [f"crop.interpolation={interpolation}", *overrides])


def cache_path(cache_dir: Path, model: EvalModel, dataset: Dataset, split: str, size: int,
               view: AugmentSpec | None = None) -> Path:
    """The cache entry of one extraction; ``view``: the eval view used (None: the default, bilinear)."""
    # the view's full spec is part of the key: another filter, or a change in pipelines' resize/crop, is never a hit
    ident = json.dumps({"v": CACHE_VERSION, "model": model.identity, "data": dataset_identity(dataset),
                        "split": split, "size": size, "transform": repr(view or eval_view())}, sort_keys=True)
    return cache_dir / f"{hashlib.sha256(ident.encode()).hexdigest()[:40]}.npz"


def _save(path: Path, f: Features) -> None:
    buf = io.BytesIO()
    stats = np.array(json.dumps(f.stats, default=str))
    np.savez(buf, keys=f.keys.astype(str), labels=f.labels, feats=f.feats, stats=stats)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def _load(path: Path) -> Features:
    with np.load(path, allow_pickle=False) as z:
        return Features(z["keys"], z["labels"], z["feats"], json.loads(str(z["stats"])), cached=True)


def split_features(model: EvalModel, dataset: Dataset, split: str, *, size: int, batch_size: int = 256,
                   workers: int = 0, device: str = "cpu", cache_dir: Path | None = None,
                   view: AugmentSpec | None = None) -> Features:
    """Features of every sample of ``split`` through the eval ``view`` (None: :func:`eval_view`'s bilinear
    default), from the cache when this (model, data, split, size, view) was seen."""
    view = view or eval_view()
    path = cache_path(cache_dir, model, dataset, split, size, view) if cache_dir is not None else None
    if path is not None and path.exists():
        return _load(path)
    from headcam.pipelines.loader import LoaderConfig, build_loader

    loader_device = device if model.kind == "network" else "cpu"
    loader = build_loader(dataset, split, LoaderConfig(augment=view, batch_size=batch_size, size=size, train=False,
                                                       device=loader_device, workers=workers))
    keys, labels, feats = extract(model, loader, device, total=len(loader), desc=f"{model.name} {split}")
    out = Features(np.array(keys, dtype=str), labels, feats, stats=dict(getattr(loader, "stats", {}) or {}))
    if path is not None:
        _save(path, out)
    return out


def view_features(model: EvalModel, dataset: Dataset, splits: list[str], keys: Iterable[str], *, spec: AugmentSpec,
                  epoch: int, size: int, batch_size: int = 256, workers: int = 0, device: str = "cpu",
                  seed: int = 0) -> Features:
    """Features of one epoch's random views (``spec``: a resolved view recipe) of the samples ``keys`` of
    ``splits``: every sample once, in shard order, each view drawn from (``seed``, ``epoch``, batch), so
    another epoch sees other views. Never cached: the views change every epoch."""
    from headcam.pipelines.loader import LoaderConfig, build_loader

    loader_device = device if model.kind == "network" else "cpu"
    loader = build_loader(dataset, splits, LoaderConfig(augment=spec, batch_size=batch_size, size=size, train=False,
                                                        device=loader_device, workers=workers, seed=seed,
                                                        keys=frozenset(keys)))
    loader.set_epoch(epoch)
    got_keys, labels, feats = extract(model, loader, device, total=len(loader), desc=f"{model.name} epoch {epoch}")
    return Features(np.array(got_keys, dtype=str), labels, feats, stats=dict(getattr(loader, "stats", {}) or {}))
