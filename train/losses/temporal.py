"""Temporal classification: cross-entropy over temporal-segment labels.

[0] Orhan, Gupta & Lake 2020, "Self-supervised learning through the eyes of a child",
https://arxiv.org/abs/2007.16189: every ``seg_len`` seconds of one child's video is a class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TemporalClassificationLoss(nn.Module):
    """Mean cross-entropy. Shape: ``logits`` (B, n_classes) and ``labels`` (B,) int64 in [0, n_classes)."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels)
