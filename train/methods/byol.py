"""BYOL (Grill et al. 2020): an online predictor regresses the projection of an EMA target."""

from __future__ import annotations

import torch
from torch import nn

from headcam.train.ema import ema_update, frozen_copy, momentum_at
from headcam.train.heads import mlp
from headcam.train.losses.byol import BYOLLoss
from headcam.train.methods.base import Method, MethodContext
from headcam.train.registry import ByolConfig


class BYOL(Method):
    """Online trunk + projector + predictor; target trunk + projector, an EMA of the online ones.

    Each view's prediction regresses the target projection of the other view (:class:`BYOLLoss`).
    The checkpoint trunk is the online one (BYOL evaluates the online encoder).
    """

    def __init__(self, trunk: nn.Module, feat_dim: int, cfg: ByolConfig, ctx: MethodContext):
        super().__init__()
        self.trunk = trunk
        self.projector = mlp(feat_dim, cfg.proj_hidden, cfg.proj_dim, batch_norm=True)
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim, batch_norm=True)
        self.target_trunk, self.target_projector = frozen_copy(trunk), frozen_copy(self.projector)
        self.loss = BYOLLoss()
        self.classifier = None
        self.base_momentum = self.momentum = cfg.momentum

    def target_parameters(self) -> list[nn.Parameter]:
        return [*self.target_trunk.parameters(), *self.target_projector.parameters()]

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        # one forward per view, as BYOL: BatchNorm statistics never mix the two views
        predictions = torch.stack([self.predictor(self.projector(self.trunk(v))) for v in views[:2]])
        with torch.no_grad():
            targets = torch.stack([self.target_projector(self.target_trunk(v)) for v in views[:2]])
        return self.loss(predictions, targets)

    def begin_step(self, step: int, total: int) -> dict[str, float]:
        self.momentum = momentum_at(step, total, self.base_momentum)
        return {"target_momentum": self.momentum}

    def end_step(self) -> None:
        ema_update(self.target_parameters(), [*self.trunk.parameters(), *self.projector.parameters()],
                   self.momentum)
