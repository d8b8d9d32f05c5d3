"""Momentum (EMA) targets and the per-step schedules the momentum methods share (MoCo, DINO, BYOL).

[0] DINO, Caron et al. 2021, https://arxiv.org/abs/2104.14294 (``utils.cosine_scheduler``).
[1] BYOL, Grill et al. 2020, https://arxiv.org/abs/2006.07733 (τ_k = 1 − (1 − τ_base)(cos(πk/K) + 1)/2).

Schedules are plain functions of the step, not stateful objects: a resumed run computes the same
value for the same step with nothing extra saved.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch
from torch import nn


def cosine(step: int, total: int, start: float, end: float) -> float:
    """``start`` at step 0, ``end`` at step ``total`` (and after), half a cosine in between."""
    if total <= 0:
        return end
    t = min(max(step, 0), total) / total
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def warmup_then_constant(step: int, warmup: int, start: float, end: float) -> float:
    """Linear from ``start`` to ``end`` over ``warmup`` steps, then ``end`` (DINO's teacher temperature)."""
    if step >= warmup or warmup <= 0:
        return end
    return start + (end - start) * step / warmup


def momentum_at(step: int, total: int, base: float) -> float:
    """The EMA momentum of DINO and BYOL: ``base`` at step 0, rising to 1 at the last step by a cosine."""
    return cosine(step, total, base, 1.0)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that takes no gradient: the starting point of an EMA target (MoCo's key
    encoder, BYOL's target, DINO's teacher head)."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: Iterable[nn.Parameter], online: Iterable[nn.Parameter], momentum: float) -> None:
    """θ_t ← m·θ_t + (1 − m)·θ_s for paired parameter lists (one fused kernel for all of them)."""
    target, online = list(target), list(online)
    if len(target) != len(online):
        raise ValueError(f"{len(target)} target parameters for {len(online)} online ones")
    torch._foreach_lerp_(target, online, 1.0 - momentum)
