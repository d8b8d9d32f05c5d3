"""VICReg: variance-invariance-covariance regularisation of two views' embeddings.

[0] VICReg, Bardes, Ponce & LeCun, ICLR 2022, https://arxiv.org/abs/2105.04906 (eq. 1-6).
[1] facebookresearch/vicreg ``main_vicreg.py`` (``VICReg.forward``), whose arithmetic this follows:

    s = MSE(z₁, z₂)                                      invariance, on this rank's batch
    z ← z − mean(z)                                      (z gathered from all ranks, with gradient)
    v = ½·mean_j relu(1 − sqrt(Var(z₁)_j + ε)) + ½·(same for z₂)       ε = 1e-4, unbiased variance
    c = Σ_{i≠j} C(z₁)_ij² / d + Σ_{i≠j} C(z₂)_ij² / d,   C(z) = zᵀz / (N − 1)
    ℓ = λ·s + μ·v + ν·c                                  λ = μ = 25, ν = 1

The ½ on each variance term is the reference code's (the paper writes v(Z) + v(Z'); solo-learn
drops the ½ and so weights variance twice as much). N is the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from headcam.train import dist
from headcam.train.losses.precision import full

EPS = 1e-4


def off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, flattened."""
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


class VICRegLoss(nn.Module):
    """Shape: ``z1``, ``z2`` (B, D), the two views' expander outputs. Returns the weighted scalar loss;
    :meth:`terms` gives the three unweighted terms (s, v, c) for the log and the tests."""

    def __init__(self, sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0):
        super().__init__()
        if min(sim_weight, var_weight, cov_weight) < 0:
            raise ValueError("VICReg weights must be >= 0")
        self.weights = (sim_weight, var_weight, cov_weight)

    @staticmethod
    def terms(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z1, z2 = full(z1), full(z2)
        invariance = F.mse_loss(z1, z2)
        z1, z2 = dist.gather_with_grad(z1), dist.gather_with_grad(z2)
        n, d = z1.shape
        z1, z2 = z1 - z1.mean(dim=0), z2 - z2.mean(dim=0)
        variance = sum(F.relu(1 - torch.sqrt(z.var(dim=0) + EPS)).mean() / 2 for z in (z1, z2))
        covariance = sum(off_diagonal(z.T @ z / (n - 1)).pow(2).sum() / d for z in (z1, z2))
        return invariance, variance, covariance

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return sum(w * t for w, t in zip(self.weights, self.terms(z1, z2), strict=True))
