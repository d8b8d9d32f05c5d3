"""Baby-vision temporal classification (Orhan et al. 2020): which temporal segment a frame is from."""

from __future__ import annotations

import torch
from torch import nn

from headcam.console import UsageError
from headcam.train.losses.temporal import TemporalClassificationLoss
from headcam.train.methods.base import Method, MethodContext


class TemporalClassification(Method):
    """trunk -> Linear(feat_dim, n_classes) -> cross-entropy; the head is kept in the checkpoint."""

    def __init__(self, trunk: nn.Module, feat_dim: int, cfg: None, ctx: MethodContext):
        super().__init__()
        if not ctx.n_classes:
            raise UsageError("method tc needs class labels, and this dataset has no classes")
        self.trunk = trunk
        self.classifier = nn.Linear(feat_dim, ctx.n_classes)
        self.loss = TemporalClassificationLoss()

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return self.loss(self.classifier(self.trunk(views[0])), labels)
