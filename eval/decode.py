"""Linear / kNN decoding of one model under one protocol: features -> readout -> a result row.

This is the loop the CLI runs once per ``--model``; it owns no I/O besides the feature cache,
so tests and notebooks call it directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headcam.eval.features import Features, eval_view, split_features
from headcam.eval.models import EvalModel
from headcam.eval.probes import ProbeResult, run_probe
from headcam.eval.protocols import Plan, Source


@dataclass
class DecodeOptions:
    """Everything but the model and the protocol; defaults are the original recipe's (SPEC §7)."""

    size: int = 224
    batch_size: int = 256
    workers: int = 0
    device: str = "cpu"
    epochs: int = 100
    lr: float = 5e-4
    probe_batch_size: int = 1024
    k: int = 20
    temperature: float = 0.07
    seed: int = 0
    cache_dir: Path | None = None
    interpolation: str = "bilinear"  # the eval view's resize filter (a linear preset's ``test_interpolation``)


@dataclass
class DecodeResult:
    row: dict[str, Any]  # one line of the report
    probe: ProbeResult
    y_test: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


def source_features(model: EvalModel, src: Source, opts: DecodeOptions) -> Features:
    """Features of a protocol source through the eval view resized with ``opts.interpolation``: its splits
    extracted (or read from cache), rows picked by key."""
    view = eval_view(opts.interpolation)
    parts = [split_features(model, src.dataset, split, size=opts.size, batch_size=opts.batch_size,
                            workers=opts.workers, device=opts.device, cache_dir=opts.cache_dir, view=view)
             for split in src.splits]
    merged = Features(np.concatenate([p.keys for p in parts]), np.concatenate([p.labels for p in parts]),
                      np.concatenate([p.feats for p in parts]), stats=_sum_stats(p.stats for p in parts),
                      cached=all(p.cached for p in parts))
    picked = merged.select(src.keys)
    if src.label_map is not None:
        picked.labels = src.label_map[picked.labels]
    return picked


def _sum_stats(stats) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for s in stats:
        for k, v in s.items():
            if isinstance(v, int | float):
                total[k] = total.get(k, 0) + v
    return total


def default_probe(model: EvalModel, asked: str | None) -> str:
    """The probe a model gets when none is asked for: a linear SVM for HOG (SPEC §7), else Adam."""
    if asked is not None:
        return asked
    return "svm" if model.kind == "hog" else "adam"


def decode(model: EvalModel, plan: Plan, opts: DecodeOptions, probe: str) -> DecodeResult:
    """Extract (or load) features for both sides of ``plan`` and fit/score the ``probe``."""
    t0 = time.perf_counter()
    train = source_features(model, plan.train, opts)
    test = source_features(model, plan.test, opts)
    t_feat = time.perf_counter() - t0
    res = run_probe(probe, train.feats, train.labels, test.feats, test.labels, plan.n_classes, epochs=opts.epochs,
                    lr=opts.lr, batch_size=opts.probe_batch_size, k=opts.k, temperature=opts.temperature,
                    seed=opts.seed, device=opts.device)
    row = result_row(model, plan, probe, res, train, test, feature_seconds=t_feat,
                     probe_seconds=time.perf_counter() - t0 - t_feat)
    return DecodeResult(row=row, probe=res, y_test=test.labels, stats=row["loader_stats"])


def result_row(model: EvalModel, plan: Plan, probe: str, res: ProbeResult, train: Features, test: Features, *,
               feature_seconds: float, probe_seconds: float) -> dict[str, Any]:
    """One line of a report: the fields every readout (linear, kNN, fine-tuning) reports, so ``compare``
    lines them up; ``train`` / ``test`` are the rows that trained and scored the readout."""
    return {
        "model": model.name, "kind": model.kind, "arch": model.arch, "protocol": plan.protocol, "probe": probe,
        "top1": round(res.top1, 2), "top5": round(res.top5, 2), "n_train": int(len(train.keys)),
        "n_test": int(len(test.keys)), "n_classes": plan.n_classes,
        "chance": round(100.0 / max(len(np.unique(test.labels)), 1), 2),
        "feat_dim": int(train.feats.shape[1]) if train.feats.ndim == 2 else None,
        "features_cached": bool(train.cached and test.cached), "feature_seconds": round(feature_seconds, 2),
        "probe_seconds": round(probe_seconds, 2), "missing": _missing(plan, train, test),
        "loader_stats": _sum_stats([train.stats, test.stats]),
    }


def _missing(plan: Plan, train: Features, test: Features) -> int:
    """Samples the protocol asked for that produced no features (e.g. corrupt images skipped)."""
    return len(plan.train.keys) - len(train.keys) + len(plan.test.keys) - len(test.keys)
