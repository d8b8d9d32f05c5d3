"""NT-Xent (normalised temperature-scaled cross-entropy), any number of views per image.

[0] SimCLR, Chen et al. 2020, https://arxiv.org/abs/2002.05709 (Algorithm 1, two views).
[1] SupCon, Khosla et al. 2020, https://arxiv.org/abs/2004.11362 (eq. 2, ``L_out``: many positives).

Multi-positive form used here, for N images with V >= 2 views each (M = N·V embeddings, all
ranks together): z are L2-normalised, s(i, k) = z_i · z_k / τ. For embedding i, P(i) = the
V − 1 other views of the same image, and the denominator runs over every k ≠ i:

    ℓ_i = − 1/|P(i)| · Σ_{p ∈ P(i)} log( exp s(i, p) / Σ_{k ≠ i} exp s(i, k) )

The loss is the mean of ℓ_i over this rank's embeddings (DDP's gradient averaging then makes it
the mean over all M). With V = 2 this is exactly SimCLR's NT-Xent: each view's single positive
is its partner, the other 2N − 2 are negatives. Other positives stay in the denominator, as in
SimCLR multi-crop and SupCon ``L_out``.

With DDP the embeddings of every rank are gathered **with gradient** (:func:`gather_with_grad`),
so negatives from other ranks push on this rank's encoder too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from headcam.train import dist
from headcam.train.losses.precision import full


class NTXentLoss(nn.Module):
    """NT-Xent over V views.

    Shape: ``z`` is (V, N, D): view v of image n at ``z[v, n]`` (N images on this rank).
    Returns a scalar.
    """

    def __init__(self, temperature: float = 0.1, gather: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.gather = gather

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 3 or z.shape[0] < 2:
            raise ValueError(f"z must be (views >= 2, batch, dim), got {tuple(z.shape)}")
        n_views, n, _ = z.shape
        z = F.normalize(full(z), dim=-1)
        # image-major order: row = image * V + view, so one rank's rows are contiguous after gathering
        local = z.transpose(0, 1).reshape(n * n_views, -1)
        everyone = dist.gather_with_grad(local) if self.gather else local
        offset = dist.rank() * local.shape[0] if self.gather else 0
        logits = local @ everyone.T / self.temperature
        rows = torch.arange(local.shape[0], device=z.device)
        own = rows + offset
        logits[rows, own] = float("-inf")  # k != i
        log_prob = logits.log_softmax(dim=1)
        image = own // n_views
        cols = torch.arange(everyone.shape[0], device=z.device)
        positive = (cols[None, :] // n_views == image[:, None]) & (cols[None, :] != own[:, None])
        per_row = -(log_prob.masked_fill(~positive, 0.0).sum(dim=1)) / (n_views - 1)
        return per_row.mean()
