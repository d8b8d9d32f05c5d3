"""MoCo v2 (Chen et al. 2020), image and temporal: a query encoder, a momentum key encoder, a queue of keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from headcam.console import UsageError
from headcam.train import dist
from headcam.train.ema import ema_update, frozen_copy
from headcam.train.heads import mlp
from headcam.train.losses.moco import KeyQueue, MoCoLoss
from headcam.train.methods.base import Method, MethodContext
from headcam.train.registry import MocoConfig


class MoCo(Method):
    """``views[0]`` is the query, ``views[1]`` the key: another augmentation of the same image
    (``moco``) or another frame of the same clip (``moco_temporal``; the loader's temporal pair).

    Shuffle-BN: BatchNorm statistics over a batch let a query "see" its own key's batch and
    cheat. Across ranks the key batch is gathered, permuted with a permutation drawn on rank 0
    and broadcast, encoded in slices, and un-permuted (MoCo's reference, written with our
    gather/broadcast). On a single process the permutation changes nothing (BN sees the same
    batch), so single-process MoCo keeps that leak, as in the MoCo paper's single-GPU caveat.
    """

    def __init__(self, trunk: nn.Module, feat_dim: int, cfg: MocoConfig, ctx: MethodContext):
        super().__init__()
        global_batch = ctx.batch_size * ctx.world
        if cfg.queue % global_batch:
            fit = max(1, cfg.queue // global_batch) * global_batch
            raise UsageError(f"moco.queue={cfg.queue} must be a multiple of the global batch {global_batch} "
                             f"(batch_size x ranks); e.g. moco.queue={fit}")
        self.trunk = trunk
        self.head = mlp(feat_dim, feat_dim, cfg.dim) if cfg.mlp else nn.Linear(feat_dim, cfg.dim)
        self.key_trunk, self.key_head = frozen_copy(trunk), frozen_copy(self.head)
        self.queue = KeyQueue(cfg.dim, cfg.queue, ctx.seed)
        self.momentum = cfg.m
        self.classifier = None
        self.loss = MoCoLoss(cfg.T)

    def _momentum_update(self) -> None:
        ema_update([*self.key_trunk.parameters(), *self.key_head.parameters()],
                   [*self.trunk.parameters(), *self.head.parameters()], self.momentum)

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
