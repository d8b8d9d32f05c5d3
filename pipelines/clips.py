"""Clips as samples: which T frames of a shard clip a batch row takes, and the (B, T, ...) layout of its views.

Why here and so small: reading clips (grouping a shard's frames into their clips, counting the ones
too short, the rank and worker split) is :mod:`headcam.shards.read`'s, and augmenting them is the
frame :class:`~headcam.pipelines.torch.views.ViewMaker`'s, one parameter draw per clip applied to its
T frames. What is left for the loader is the temporal sampling of the reference video recipes
(mae_st's ``temporal_sampling``: T frames at a fixed stride from a random start when training,
a fixed start when evaluating) and folding B·T frames back into B clips.
"""

from __future__ import annotations

import random

import torch

from headcam.shards.read import RawSample


def clip_window(clip: list[RawSample], frames: int, stride: int, rng: random.Random | None) -> tuple[RawSample, ...]:
    """``frames`` frames of ``clip``, ``stride`` apart: from a start drawn uniformly among the valid ones
    (``rng``: training's temporal jitter), else from the first frame. ``clip`` holds enough of them."""
    span = (frames - 1) * stride + 1
    start = rng.randrange(len(clip) - span + 1) if rng is not None else 0
    return tuple(clip[start:start + span:stride])


def as_clips(frames: torch.Tensor, clip_frames: int) -> torch.Tensor:
    """B·T rows, clip after clip (each clip's frames in time order) -> B×T×..."""
    return frames.reshape(frames.shape[0] // clip_frames, clip_frames, *frames.shape[1:])


__all__ = ["as_clips", "clip_window"]
