"""MoCo v2 objective: InfoNCE of a query against its key and a queue of past keys.

[0] MoCo, He et al. 2019, https://arxiv.org/abs/1911.05722 (Algorithm 1).
[1] MoCo v2, Chen et al. 2020, https://arxiv.org/abs/2003.04297 (T = 0.2, MLP head).

:class:`KeyQueue` is the dictionary: a ring buffer of K keys. Each step enqueues the keys of
the whole global batch (gathered from every rank, so every rank's queue is identical), which
is why K must be a multiple of the global batch: the pointer then always wraps exactly at K.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KeyQueue(nn.Module):
    """Ring buffer of ``size`` L2-normalised keys of dimension ``dim`` (a buffer: saved and restored)."""

    def __init__(self, dim: int, size: int, seed: int = 0):
        super().__init__()
        if size <= 0:
            raise ValueError(f"queue size must be > 0, got {size}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("keys", F.normalize(torch.randn(size, dim, generator=g), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest ``len(keys)`` entries. Shape: ``keys`` (B, dim) with size % B == 0."""
        b = keys.shape[0]
        if self.size % b:
            raise ValueError(f"queue size {self.size} is not a multiple of the global batch {b}")
        p = int(self.ptr)
        self.keys[p:p + b] = keys.to(self.keys.dtype)
        self.ptr.fill_((p + b) % self.size)


class MoCoLoss(nn.Module):
    """Cross-entropy with the positive key at index 0 and the queue as negatives.

    Shape: ``q`` and ``k`` (B, D), ``queue`` (K, D); all L2-normalised. Returns a scalar.
    """

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        positive = (q * k).sum(dim=1, keepdim=True)
        negatives = q @ queue.T
        logits = torch.cat([positive, negatives], dim=1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
