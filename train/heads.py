"""Projection heads of the self-supervised methods (the trunk's features in, the loss's embedding out).

[0] SimCLR / MoCo v2: Linear -> ReLU -> Linear; BYOL (Grill et al. 2020): Linear(4096) -> BN -> ReLU -> Linear(256).
[1] DINO, Caron et al. 2021, https://arxiv.org/abs/2104.14294 (``DINOHead``): a 3-layer MLP (GELU),
    a bottleneck, L2 normalisation, and a weight-normalised last layer whose norm is fixed to 1
    (``norm_last_layer``), which the paper found to stabilise training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations


def mlp(d_in: int, d_hidden: int, d_out: int, batch_norm: bool = False) -> nn.Sequential:
    """Projection head: Linear -> ReLU -> Linear (SimCLR v1, MoCo v2); with ``batch_norm`` Linear -> BN ->
    ReLU -> Linear, BYOL's projector and predictor."""
    norm = [nn.BatchNorm1d(d_hidden)] if batch_norm else []
    return nn.Sequential(nn.Linear(d_in, d_hidden), *norm, nn.ReLU(inplace=True), nn.Linear(d_hidden, d_out))


class DINOHead(nn.Module):
    """Shape: (B, in_dim) -> (B, out_dim) logits. Linear layers start as DINO's (truncated normal, std 0.02)."""

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 n_layers: int = 3, norm_last_layer: bool = True):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (max(n_layers, 1) - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))
