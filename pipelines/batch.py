"""What every augmentation backend yields: one step's views, labels, keys and a typed record of them.

Why typed: the trainer, eval and the tests read the same fields whatever backend (torch or DALI)
made the batch, and a misspelt field is an AttributeError at once instead of a silent ``None``
from a dict (STYLE.md practice 9: the loader's format never leaks into ``train/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class ViewRecord:
    """How one view of a batch was made: its drawn parameters (batched, one row per image, named as the
    fields of :class:`headcam.pipelines.params.ViewParams`) and its fixations (B×2 (row, col), or B×0
    when the recipe has none)."""

    params: dict[str, torch.Tensor]
    fixations: torch.Tensor


@dataclass
class BatchMeta:
    """Everything about a batch but its pixels and labels; the same fields from every backend."""

    backend: str  # "torch" | "dali"
    epoch: int
    step: int  # index of this batch within its epoch (a resumed loader continues the count)
    stats: dict[str, int] = field(default_factory=dict)  # this batch's data problems: corrupt, read_errors, ...
    samples: list[dict[str, Any]] = field(default_factory=list)  # each sample's KEY.json (source, pts, clip...)
    partner_keys: list[str] | None = None  # temporal pairs: the keys of views[1]
    partner_samples: list[dict[str, Any]] | None = None  # temporal pairs: views[1]'s KEY.json
    views: list[ViewRecord] | None = None  # one per view, only when the loader was asked to record them
    clip_keys: list[list[str]] | None = None  # clips: each clip's T frame keys, in time order
    clip_samples: list[list[dict[str, Any]]] | None = None  # clips: each frame's KEY.json (pts: the stride)


@dataclass
class Batch:
    """One step's data: ``views`` (n_views float32 B×3×S×S global views, then the recipe's local crops
    B×3×s×s; normalised, on the loader's device), ``label`` int64 (B,), ``keys`` (B sample keys; temporal
    pairs: the query's) and ``meta``. Clips (``LoaderConfig.clip_frames=T``): every view is B×T×3×S×S,
    ``label`` the clip's (its first frame's), ``keys`` each clip's first frame key; ``meta.samples`` the
    first frames' KEY.json, ``meta.clip_keys`` / ``meta.clip_samples`` all T frames'; ``meta.views``
    records each view's parameters as B×T rows (equal along T: one draw per clip)."""

    views: list[torch.Tensor]
    label: torch.Tensor
    keys: list[str]
    meta: BatchMeta


__all__ = ["Batch", "BatchMeta", "ViewRecord"]
