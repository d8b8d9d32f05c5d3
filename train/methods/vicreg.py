"""VICReg (Bardes et al. 2022): two views through trunk + expander, no negatives, no EMA target."""

from __future__ import annotations

import torch
from torch import nn

from headcam.train.losses.vicreg import VICRegLoss
from headcam.train.methods.base import Method, MethodContext
from headcam.train.registry import VicregConfig


def expander(feat_dim: int, widths: tuple[int, ...]) -> nn.Sequential:
    """The reference's ``Projector``: (Linear -> BatchNorm1d -> ReLU) per hidden width, then a bias-free Linear."""
    dims = (feat_dim, *widths)
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-2], dims[1:-1], strict=True):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=False))
    return nn.Sequential(*layers)


class VICReg(Method):
    """One forward per view (BatchNorm statistics never mix the views, as the reference); the checkpoint
    trunk is the only encoder."""

    def __init__(self, trunk: nn.Module, feat_dim: int, cfg: VicregConfig, ctx: MethodContext):
        super().__init__()
        self.trunk = trunk
        self.expander = expander(feat_dim, tuple(cfg.expander))
        self.classifier = None
        self.loss = VICRegLoss(cfg.sim_weight, cfg.var_weight, cfg.cov_weight)

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        z1, z2 = (self.expander(self.trunk(v)) for v in views[:2])
        return self.loss(z1, z2)
