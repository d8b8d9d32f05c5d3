"""Method wrappers: each turns a batch of views (+ labels) into a loss. Nothing else.

The trainer (``train/trainer.py``) is the same loop for every method; a method brings only its
model pieces and its objective. Every wrapper exposes ``trunk`` (the backbone that a checkpoint
stores as ``backbone``) and ``classifier`` (a head worth keeping for evaluation, or None).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from headcam.console import UsageError
from headcam.train import dist
from headcam.train.config import TrainConfig
from headcam.train.losses.moco import KeyQueue, MoCoLoss
from headcam.train.losses.ntxent import NTXentLoss
from headcam.train.losses.temporal import TemporalClassificationLoss


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """Projection head: Linear -> ReLU -> Linear (SimCLR v1, MoCo v2)."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(inplace=True), nn.Linear(d_hidden, d_out))


class TemporalClassification(nn.Module):
    """Baby-vision temporal classification: trunk -> Linear(feat_dim, n_classes) -> cross-entropy."""

    def __init__(self, trunk: nn.Module, feat_dim: int, n_classes: int):
        super().__init__()
        self.trunk = trunk
        self.classifier = nn.Linear(feat_dim, n_classes)
        self.loss = TemporalClassificationLoss()

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return self.loss(self.classifier(self.trunk(views[0])), labels)


class SimCLR(nn.Module):
    """SimCLR: every view through trunk + projection MLP, NT-Xent over all views (gathered across ranks)."""

    def __init__(self, trunk: nn.Module, feat_dim: int, proj_hidden: int, proj_dim: int, temperature: float):
        super().__init__()
        self.trunk = trunk
        self.projector = mlp(feat_dim, proj_hidden or feat_dim, proj_dim)
        self.classifier = None
        self.loss = NTXentLoss(temperature)

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        z = self.projector(self.trunk(torch.cat(views)))
        return self.loss(z.view(len(views), views[0].shape[0], -1))


class MoCo(nn.Module):
    """MoCo v2: query encoder (trunk + head), momentum key encoder, queue of keys.

    ``views[0]`` is the query, ``views[1]`` the key: another augmentation of the same image
    (``moco``) or another frame of the same clip (``moco_temporal``; the loader's temporal pair).

    Shuffle-BN: BatchNorm statistics over a batch let a query "see" its own key's batch and
    cheat. Across ranks the key batch is gathered, permuted with a permutation drawn on rank 0
    and broadcast, encoded in slices, and un-permuted (MoCo's reference, written with our
    gather/broadcast). On a single process the permutation changes nothing (BN sees the same
    batch), so single-process MoCo keeps that leak, as in the MoCo paper's single-GPU caveat.
    """

    def __init__(self, trunk: nn.Module, feat_dim: int, dim: int, queue_size: int, momentum: float,
                 temperature: float, use_mlp: bool, seed: int = 0):
        super().__init__()
        self.trunk = trunk
        self.head = mlp(feat_dim, feat_dim, dim) if use_mlp else nn.Linear(feat_dim, dim)
        self.key_trunk = copy.deepcopy(trunk)
        self.key_head = copy.deepcopy(self.head)
        for p in [*self.key_trunk.parameters(), *self.key_head.parameters()]:
            p.requires_grad_(False)
        self.queue = KeyQueue(dim, queue_size, seed)
        self.momentum = momentum
        self.classifier = None
        self.loss = MoCoLoss(temperature)

    @torch.no_grad()
    def _momentum_update(self) -> None:
        q = [*self.trunk.parameters(), *self.head.parameters()]
        k = [*self.key_trunk.parameters(), *self.key_head.parameters()]
        torch._foreach_lerp_(k, q, 1.0 - self.momentum)

    @torch.no_grad()
    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        world = dist.world_size()
        if world == 1:
            return F.normalize(self.key_head(self.key_trunk(x)).float(), dim=1)
        everyone = dist.gather_no_grad(x)
        perm = torch.randperm(everyone.shape[0], device=x.device)
        torch.distributed.broadcast(perm, src=0)
        n, r = x.shape[0], dist.rank()
        mine = perm[r * n:(r + 1) * n]
        k = F.normalize(self.key_head(self.key_trunk(everyone[mine])).float(), dim=1)
        k_all = dist.gather_no_grad(k)
        unshuffled = torch.empty_like(k_all)
        unshuffled[perm] = k_all
        return unshuffled[r * n:(r + 1) * n]

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        q = F.normalize(self.head(self.trunk(views[0])).float(), dim=1)
        if self.training:
            self._momentum_update()
        k = self._keys(views[1])
        loss = self.loss(q, k, self.queue.keys.clone())
        if self.training:
            self.queue.enqueue(dist.gather_no_grad(k))
        return loss


def build_method(cfg: TrainConfig, trunk: nn.Module, feat_dim: int, *, n_classes: int | None,
                 world: int) -> nn.Module:
    """The wrapper for ``cfg.method`` around ``trunk``; user errors (labels, queue size) as UsageError."""
    if cfg.method == "tc":
        if not n_classes:
            raise UsageError("method tc needs class labels, and this dataset has no classes")
        return TemporalClassification(trunk, feat_dim, n_classes)
    if cfg.method == "simclr":
        return SimCLR(trunk, feat_dim, cfg.simclr.proj_hidden, cfg.simclr.proj_dim, cfg.simclr.T)
    m = cfg.moco
    global_batch = cfg.batch_size * world
    if m.queue % global_batch:
        fit = max(1, m.queue // global_batch) * global_batch
        raise UsageError(f"moco.queue={m.queue} must be a multiple of the global batch {global_batch} "
                         f"(batch_size x ranks); e.g. moco.queue={fit}")
    return MoCo(trunk, feat_dim, m.dim, m.queue, m.m, m.T, m.mlp, cfg.seed)
