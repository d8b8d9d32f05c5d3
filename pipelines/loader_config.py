""":class:`LoaderConfig`: everything ``build_loader`` needs besides the data, in one frozen, typed object.

Why one object: the loader used to take seventeen keyword arguments, a recipe name *and* an ``augment``
that, when it was a whole spec, silently replaced the recipe; the DALI loader re-threaded the same
fifteen. Now the recipe is resolved before (:func:`headcam.pipelines.spec.resolve_spec`, or the
trainer's typed ``augment`` section), the config holds only the resulting :class:`AugmentSpec`, and
the torch loader, the DALI loader and evaluation take the same object. Impossible values are a
one-line :class:`~headcam.console.UsageError` when the config is made, before any data is read.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from headcam.console import UsageError
from headcam.pipelines.spec import AugmentSpec, recipe_spec

BACKENDS = ("torch", "dali")


@dataclass(frozen=True)
class LoaderConfig:
    """How a split becomes :class:`~headcam.pipelines.batch.Batch` es (see ``build_loader``).

    ``augment``: the resolved view recipe (a copy is kept, so later edits of the caller's spec change nothing).
    ``train=True``: shuffled, full batches only, the same number of steps on every rank; ``False``: every
    sample once, shard order, last partial batch kept. ``batch.views``: ``n_views`` global views at ``size``,
    then the recipe's ``local.n`` local crops. ``workers``: DataLoader workers (torch) or DALI CPU threads;
    training uses fewer when the shards cannot feed that many, and says so in one line.
    ``rank``/``world``: None = this process's place in the process group for training
    (:func:`headcam.shards.read.rank_world`); evaluation reads the whole split unless a rank is given.
    ``temporal_window=w`` (needs ``n_views=2``): views[1] is another frame of views[0]'s clip within ±w
    sampled frames. ``record_views``: fill ``batch.meta.views`` with each view's drawn parameters and
    fixations (tests, the gallery). ``keys``: a key filter, only these samples are read (torch backend).
    ``clip_frames=T`` (> 0): every sample is a clip, T frames of one shard clip ``clip_stride`` sampled frames
    apart (start drawn among the valid starts when training, the first one otherwise); ``batch.views[i]`` is
    B×T×3×S×S with one crop/flip/colour draw per clip and view. 0: samples are single frames.
    """

    augment: AugmentSpec
    batch_size: int
    size: int = 224
    n_views: int = 1
    train: bool = True
    backend: str = "torch"
    device: str = "cpu"
    workers: int = 0
    seed: int = 0
    rank: int | None = None
    world: int | None = None
    shuffle_buffer: int = 1000
    temporal_window: int | None = None
    record_views: bool = False
    keys: frozenset[str] | None = None
    clip_frames: int = 0
    clip_stride: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.augment, AugmentSpec):
            raise TypeError(f"LoaderConfig.augment must be a resolved AugmentSpec (headcam.pipelines.spec.resolve_spec"
                            f" turns a recipe name into one), got {type(self.augment).__name__}")
        object.__setattr__(self, "augment", copy.deepcopy(self.augment).validate())
        object.__setattr__(self, "device", str(self.device))  # a torch.device is welcome; kept as its name
        if self.keys is not None:
            object.__setattr__(self, "keys", frozenset(self.keys))
        self._check()

    def _check(self) -> None:
        if self.backend not in BACKENDS:
            raise UsageError(f"unknown backend '{self.backend}'; valid backends: {', '.join(BACKENDS)}")
        if self.batch_size < 1 or self.n_views < 1 or self.size < 8:
            raise UsageError(f"batch_size and n_views must be >= 1 and size >= 8 (got {self.batch_size}, "
                             f"{self.n_views}, {self.size})")
        if self.workers < 0 or self.shuffle_buffer < 0:
            raise UsageError(f"workers and shuffle_buffer must be >= 0 (got {self.workers}, {self.shuffle_buffer})")
        if self.temporal_window is not None and (self.temporal_window < 1 or self.n_views != 2
                                                 or self.augment.local.n):
            raise UsageError(f"temporal_window must be >= 1 and needs n_views=2 and no local crops (got "
                             f"{self.temporal_window}, {self.n_views}, local.n={self.augment.local.n})")
        self._check_clips()
        if self.rank is not None and self.world is not None and not 0 <= self.rank < self.world:
            raise UsageError(f"rank {self.rank} is not one of world {self.world}'s ranks 0..{self.world - 1}")
        if self.keys is not None and not self.keys:
            raise UsageError("the key filter is empty: nothing to read")
        try:
            torch.device(self.device)
        except RuntimeError:
            raise UsageError(f"unknown device '{self.device}' (cpu, cuda, cuda:N ...)") from None

    def _check_clips(self) -> None:
        if self.clip_frames < 0 or self.clip_stride < 1:
            raise UsageError(f"clip_frames must be >= 0 and clip_stride >= 1 (got {self.clip_frames}, "
                             f"{self.clip_stride})")
        if self.clip_frames and self.temporal_window is not None:
            raise UsageError("clip_frames and temporal_window exclude each other: a clip already holds its frames")
        if self.clip_frames and self.backend == "dali":
            raise UsageError("clips (clip_frames > 0) need backend=torch: DALI's webdataset reader reads frames "
                             "one by one, so it cannot keep a clip's frames together or give them one crop")

    @property
    def clip_span(self) -> int:
        """Sampled frames a clip must hold for ``clip_frames`` frames ``clip_stride`` apart (0: frames)."""
        return (self.clip_frames - 1) * self.clip_stride + 1 if self.clip_frames else 0

    @classmethod
    def for_eval(cls, *, size: int, batch_size: int, **kw: Any) -> LoaderConfig:
        """Evaluation's loader: the ``eval`` recipe (resize, centre crop), every sample once, shard order;
        ``kw``: any other field (device, workers, rank ...)."""
        return cls(augment=recipe_spec("eval"), batch_size=batch_size, size=size, train=False, **kw)


__all__ = ["BACKENDS", "LoaderConfig"]
