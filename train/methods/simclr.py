"""SimCLR (Chen et al. 2020): every view through trunk + projection MLP, NT-Xent over all views."""

from __future__ import annotations

import torch
from torch import nn

from headcam.train.heads import mlp
from headcam.train.losses.ntxent import NTXentLoss
from headcam.train.methods.base import Method, MethodContext, same_size_runs
from headcam.train.registry import SimclrConfig


class SimCLR(Method):
    """Negatives are gathered across ranks (with gradient, in the loss). Views of one size go through in one
    pass; local crops (multi-crop) are further positives of their image."""

    def __init__(self, trunk: nn.Module, feat_dim: int, cfg: SimclrConfig, ctx: MethodContext):
        super().__init__()
        self.trunk = trunk
        self.projector = mlp(feat_dim, cfg.proj_hidden or feat_dim, cfg.proj_dim)
        self.classifier = None
        self.loss = NTXentLoss(cfg.T)

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        z = torch.cat([self.projector(self.trunk(x)) for x in same_size_runs(views)])
        return self.loss(z.view(len(views), views[0].shape[0], -1))
