"""BYOL: an online network predicts the target network's projection of another view of the same image.

[0] BYOL, Grill et al. 2020, https://arxiv.org/abs/2006.07733 (eq. 2 and the symmetrised loss):
    for normalised prediction p and target z, ℓ = ‖p̄ − z̄‖² = 2 − 2·cos(p, z); the loss is
    ℓ(p₁, sg(z₂)) + ℓ(p₂, sg(z₁)), each term a batch mean. The target is an EMA of the online
    network (:func:`headcam.train.ema.momentum_at`: τ_k = 1 − (1 − τ_base)(cos(πk/K) + 1)/2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from headcam.train.losses.precision import full as _full


class BYOLLoss(nn.Module):
    """Shape: ``predictions`` and ``targets`` (2, B, D): view v's online prediction and target projection.
    Returns the symmetric loss (a scalar in [0, 8]); targets get no gradient."""

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = F.normalize(_full(predictions), dim=-1)
        z = F.normalize(_full(targets), dim=-1).detach()
        return (2 - 2 * (p[0] * z[1]).sum(dim=-1)).mean() + (2 - 2 * (p[1] * z[0]).sum(dim=-1)).mean()

