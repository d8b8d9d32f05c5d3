"""What every method shares: the hooks the loop calls, the context it is built in, and how it is built.

A method turns a batch of views (+ labels) into a loss and nothing else; the trainer
(``train/trainer.py``) is the same loop for every method. A method class is named in
:mod:`headcam.train.registry` and built by :func:`build_method` as ``cls(trunk, feat_dim, section, ctx)``:
the trunk, its feature width, the method's own config section (None if it has none) and a
:class:`MethodContext` with the run facts a method may need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headcam.shards.dataset import Dataset
from headcam.train import registry


@dataclass(frozen=True)
class MethodContext:
    """The facts of a run that a method may need besides its own section."""

    arch: str
    small_stem: bool
    n_classes: int | None  # classes of the training split (methods that need labels)
    world: int  # ranks
    batch_size: int  # per rank
    global_views: int  # views per image (DINO's teacher sees these)
    seed: int
    new_trunk: Callable[[], nn.Module]  # a fresh trunk of the same arch, no drop-path (DINO's teacher)
    clip_stride: int = 1  # a clip method's frame spacing (its held-out clips for write_artifacts are read alike)


class Method(nn.Module):
    """Base of every method. A method must set ``trunk`` (the network its checkpoint stores as ``backbone``)
    and ``classifier`` (a head worth keeping, e.g. temporal classification's, or None); :func:`build_method`
    refuses one that does not. The three hooks do nothing unless a method needs them."""

    trunk: nn.Module
    classifier: nn.Module | None

    def begin_step(self, step: int, total: int) -> dict[str, float]:
        """Set this step's scheduled values; return them for the metrics log."""
        return {}

    def before_optimizer_step(self, step: int) -> None:
        """After backward, before the optimiser: change gradients (e.g. drop a frozen layer's)."""

    def end_step(self) -> None:
        """After the optimiser step (e.g. move an EMA target)."""

    def write_artifacts(self, out: Path, dataset: Dataset, size: int, seed: int) -> None:
        """When a run ends: anything a person should look at besides the metrics (e.g. MAE's recon.png)."""

    def monitor_note(self) -> str | None:
        """A line for the user when the kNN monitor starts, if its curve needs explaining (DINO's EMA teacher)."""
        return None


class IncompleteMethod(TypeError):
    """A method class that does not declare what the loop and the checkpoint need (a programming error)."""


def check_complete(model: nn.Module, name: str) -> None:
    """One line naming what is missing: a method without ``trunk`` crashed at its first checkpoint before."""
    cls = type(model).__name__
    if not isinstance(model, Method):
        raise IncompleteMethod(f"method '{name}': {cls} is not a headcam.train.methods.base.Method")
    trunk = getattr(model, "trunk", None)
    if not isinstance(trunk, nn.Module):
        raise IncompleteMethod(f"method '{name}': {cls} sets no 'trunk' module (the network its checkpoint stores)")
    try:
        classifier = model.classifier
    except AttributeError:
        raise IncompleteMethod(f"method '{name}': {cls} sets no 'classifier' (a head module, or None)") from None
    if classifier is not None and not isinstance(classifier, nn.Module):
        raise IncompleteMethod(f"method '{name}': {cls}.classifier must be a module or None")
    if registry.entry(name).head and classifier is None:
        raise IncompleteMethod(f"method '{name}': the registry says its checkpoint stores a head, but "
                               f"{cls}.classifier is None")


def build_method(cfg: Any, trunk: nn.Module, feat_dim: int, *, n_classes: int | None, world: int) -> Method:
    """The method ``cfg.method`` (a resolved TrainConfig) around ``trunk``; user errors as UsageError."""
    from headcam.train.backbones import build_backbone
    from headcam.train.config import resolved_n_views

    entry = registry.entry(cfg.method)
    ctx = MethodContext(arch=cfg.arch, small_stem=cfg.small_stem, n_classes=n_classes, world=world,
                        batch_size=cfg.batch_size, global_views=resolved_n_views(cfg), seed=cfg.seed,
                        clip_stride=cfg.clip_stride,
                        new_trunk=lambda: build_backbone(cfg.arch, cfg.small_stem, 0.0, cfg.pos_interp,
                                                         method=cfg.method)[0])
    model = entry.load()(trunk, feat_dim, registry.section_of(cfg, cfg.method), ctx)
    check_complete(model, cfg.method)
    return model


def same_size_runs(views: list[torch.Tensor]) -> list[torch.Tensor]:
    """Consecutive views of one size concatenated: one forward pass per crop size (DINO's multi-crop)."""
    runs: list[list[torch.Tensor]] = []
    for v in views:
        if runs and runs[-1][0].shape[-2:] == v.shape[-2:]:
            runs[-1].append(v)
        else:
            runs.append([v])
    return [torch.cat(r) for r in runs]
