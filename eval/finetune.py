"""Few-shot fine-tuning (SPEC §10, "Protocols"): a seeded fraction of the labelled training samples tunes
the whole network with a new linear head, the protocol's test samples score it, and optionally
("1 % ft + linear", baby-vision's ImageNet protocol) a linear probe on the full training set then reads
the tuned trunk, frozen.

Why a key filter: skipping samples outside the subset in the tuning loop would decode and augment every
sample of the split each epoch to use 1 % of them, and a batch of 256 would shrink to ~3 subset samples.
So the loader reads the subset's keys only (``LoaderConfig.keys``, :func:`headcam.shards.read.select`):
the reader drops other samples before decoding, reads only the shards that hold subset samples, and
plans each epoch on the subset's own count, so batches are full and ranks stay in step; nothing is
copied to disk. Scoring needs no filter: the tuned network plus its head is a trunk whose "features"
are the class scores, so the linear probe's extraction (eval mode, every split once, rows picked by
key) scores it.

The originals drew the subset unseeded and unbalanced; here it is seeded, optionally class-balanced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from headcam.console import UsageError, progress
from headcam.eval.decode import DecodeOptions, DecodeResult, decode, result_row, source_features
from headcam.eval.features import Features
from headcam.eval.models import EvalModel
from headcam.eval.probes import ProbeResult, topk_accuracy
from headcam.eval.protocols import Plan, Source
from headcam.shards.read import select
from headcam.train.backbones import VITS


@dataclass
class FinetuneOptions:
    """How to tune; ``lr`` / ``lr_drop_epochs`` None = SPEC §10's value for the architecture (:func:`lr_schedule`)."""

    frac: float = 0.01
    balanced: bool = False
    epochs: int = 25
    lr: float | None = None
    lr_drop_epochs: int | None = None
    lr_drop: float = 0.2
    batch_size: int = 256
    recipe: str = "mae"
    then_linear: bool = False
    probe: str = "adam"

    def check(self) -> FinetuneOptions:
        """One line for a value that cannot work, before any data is read."""
        if not 0 < self.frac <= 1:
            raise UsageError(f"--frac {self.frac}: the fraction of training samples must be in (0, 1]")
        if self.epochs < 1 or self.batch_size < 1:
            raise UsageError(f"--epochs and --tune-batch-size must be >= 1 (got {self.epochs}, {self.batch_size})")
        if (self.lr is not None and self.lr <= 0) or (self.lr_drop_epochs or 0) < 0:
            raise UsageError(f"--lr must be > 0 and --lr-drop-epochs >= 0 (got {self.lr}, {self.lr_drop_epochs})")
        return self

    @property
    def label(self) -> str:
        """The report's ``probe`` column: ``finetune1%`` (``finetune1%+adam`` for the linear head after it)."""
        return f"finetune{100 * self.frac:g}%"


def lr_schedule(arch: str | None, ft: FinetuneOptions) -> list[float]:
    """Learning rate per epoch: Adam 1e-4 for ViTs; 5e-4 for CNNs, ×0.2 for the last 2 epochs (SPEC §10)."""
    vit = arch in VITS
    base = ft.lr if ft.lr is not None else (1e-4 if vit else 5e-4)
    drop = ft.lr_drop_epochs if ft.lr_drop_epochs is not None else (0 if vit else 2)
    return [base * (ft.lr_drop if e >= ft.epochs - drop else 1.0) for e in range(ft.epochs)]


def few_shot_subset(src: Source, frac: float, *, balanced: bool, seed: int, class_names: list[str]) -> Source:
    """A seeded ``frac`` of ``src``'s samples, in ``src``'s order; ``balanced``: the same count per class
    (``frac`` of the samples spread evenly over the classes present), or a UsageError naming a short class."""
    rng = np.random.default_rng(seed)
    if balanced:
        classes, counts = np.unique(src.labels, return_counts=True)
        per_class = max(1, round(frac * len(src.keys) / len(classes)))
        short = np.flatnonzero(counts < per_class)
        if len(short):
            c = short[0]
            more = f" (and {len(short) - 1} more classes)" if len(short) > 1 else ""
            raise UsageError(f"--balanced --frac {frac:g}: needs {per_class} training samples per class, but class "
                             f"'{class_names[classes[c]]}' has {counts[c]}{more}; use a smaller --frac or drop "
                             "--balanced")
        idx = np.concatenate([rng.choice(np.flatnonzero(src.labels == c), per_class, replace=False) for c in classes])
    else:
        idx = rng.choice(len(src.keys), max(1, round(frac * len(src.keys))), replace=False)
    idx = np.sort(idx)
    return dataclasses.replace(src, keys=[src.keys[i] for i in idx], labels=src.labels[idx])


def subset_summary(src: Source, class_names: list[str]) -> dict[str, Any]:
    """What the report records of a subset: its size, count per class and a hash of its keys."""
    counts = np.bincount(src.labels, minlength=len(class_names))
    return {"n": len(src.keys), "per_class": {class_names[c]: int(n) for c, n in enumerate(counts) if n},
            "keys_sha256": hashlib.sha256("\n".join(sorted(src.keys)).encode()).hexdigest()}


def tune(net: nn.Module, batches: Any, lrs: list[float], device: str, label_map: np.ndarray | None = None
         ) -> list[float]:
    """Adam on cross-entropy over every parameter, network in train mode (BatchNorm updates its statistics),
    learning rate ``lrs[epoch]``; ``batches`` is a loader with ``set_epoch``; ``label_map``: stored label ->
    the protocol's class (None: the same). Returns the mean loss per epoch."""
    to_class = None if label_map is None else torch.as_tensor(label_map)
    opt = torch.optim.Adam(net.parameters(), lr=lrs[0])
    losses = []
    for epoch, lr in enumerate(progress(lrs, desc="fine-tuning", unit="epoch")):
        for group in opt.param_groups:
            group["lr"] = lr
        batches.set_epoch(epoch)
        net.train()
        total, steps = 0.0, 0
        for batch in batches:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
                target = batch.label if to_class is None else to_class.to(batch.label.device)[batch.label]
                loss = nn.functional.cross_entropy(net(batch.views[0]), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()  # CPU-GPU sync, once per step
            steps += 1
        losses.append(total / max(steps, 1))
    return losses


def finetune(model: EvalModel, plan: Plan, subset: Source, opts: DecodeOptions, ft: FinetuneOptions
             ) -> list[DecodeResult]:
    """Tune ``model`` (in place) with a new head on ``subset`` (read by key), score it on ``plan.test``;
    with ``ft.then_linear`` also a linear ``ft.probe`` on the tuned trunk over the full ``plan.train``.
    ``opts`` sizes the views and the scoring batches and (``then_linear``) the probe; nothing is cached,
    since the tuned weights exist only in this run."""
    from headcam.pipelines.loader import LoaderConfig, build_loader
    from headcam.pipelines.spec import recipe_spec

    if model.kind != "network":
        raise UsageError(f"finetune needs a network (checkpoint or random:ARCH); '{model.name}' has nothing to tune")
    opts = dataclasses.replace(opts, cache_dir=None)
    torch.manual_seed(opts.seed)
    head = nn.Linear(model.feat_dim, plan.n_classes)
    net = nn.Sequential(model.trunk, head).to(opts.device)
    net.requires_grad_(True)
    n = len(subset.keys)
    # every (worker) slot needs a shard holding subset samples and a full batch of them
    workers = min(opts.workers, len(select(subset.dataset, subset.splits, subset.keys).shards))
    cfg = LoaderConfig(recipe_spec(ft.recipe), batch_size=min(ft.batch_size, n // max(workers, 1)), size=opts.size,
                       device=opts.device, workers=workers, seed=opts.seed, train=True, keys=frozenset(subset.keys))
    loader = build_loader(subset.dataset, subset.splits, cfg)
    lrs = lr_schedule(model.arch, ft)
    t0 = time.perf_counter()
    losses = tune(net, loader, lrs, opts.device, subset.label_map)
    t_tune = time.perf_counter() - t0
    scorer = dataclasses.replace(model, identity=f"{model.identity}:{ft.label}", trunk=net, feat_dim=plan.n_classes)
    test = source_features(scorer, plan.test, opts)
    t_score = time.perf_counter() - t0 - t_tune
    scores = test.feats.astype(np.float64)
    # like the linear probes: a class absent from the tuning samples is never predicted
    scores[:, np.bincount(subset.labels, minlength=plan.n_classes) == 0] = -np.inf
    res = ProbeResult(scores=scores, top1=topk_accuracy(scores, test.labels, 1),
                      top5=topk_accuracy(scores, test.labels, 5))
    tuned = Features(np.array(subset.keys, dtype=str), subset.labels, np.zeros((n, 0), dtype=np.float32),
                     stats=dict(loader.stats))
    row = {**result_row(model, dataclasses.replace(plan, train=subset), ft.label, res, tuned, test,
                        feature_seconds=t_score, probe_seconds=t_tune),
           "feat_dim": model.feat_dim, "lr": lrs[0], "lr_per_epoch": lrs, "train_loss": [round(x, 4) for x in losses]}
    results = [DecodeResult(row=row, probe=res, y_test=test.labels, stats=row["loader_stats"])]
    if ft.then_linear:  # model.trunk is the tuned trunk now; decode freezes it (eval mode, no gradients)
        lin = decode(model, plan, opts, ft.probe)
        lin.row["probe"] = f"{ft.label}+{ft.probe}"
        results.append(lin)
    return results
