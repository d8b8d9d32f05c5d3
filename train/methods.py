"""Method wrappers: each turns a batch of views (+ labels) into a loss. Nothing else.

The trainer (``train/trainer.py``) is the same loop for every method; a method brings only its
model pieces, its objective and, through three plain hooks of :class:`Method`, what it does
around a step (DINO: scheduled teacher temperature and momentum, the EMA teacher update, the
frozen last layer). Every wrapper exposes ``trunk`` (the backbone that a checkpoint stores as
``backbone``: for DINO the teacher's) and ``classifier`` (a head worth keeping, or None).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from headcam.console import UsageError
from headcam.shards.dataset import Dataset
from headcam.train import dist
from headcam.train.backbones import VITS, build_backbone
from headcam.train.config import ByolConfig, DinoConfig, TrainConfig, resolved_n_views
from headcam.train.ema import ema_update, frozen_copy, momentum_at, warmup_then_constant
from headcam.train.heads import DINOHead, mlp
from headcam.train.losses.byol import BYOLLoss
from headcam.train.losses.dino import DINOLoss
from headcam.train.losses.moco import KeyQueue, MoCoLoss
from headcam.train.losses.ntxent import NTXentLoss
from headcam.train.losses.temporal import TemporalClassificationLoss
from headcam.train.mae import MAE
from headcam.train.recon import write_reconstructions


class Method(nn.Module):
    """The hooks the loop calls around every optimiser step; by default they do nothing."""

    def begin_step(self, step: int, total: int) -> dict[str, float]:
        """Set this step's scheduled values; return them for the metrics log."""
        return {}

    def before_optimizer_step(self, step: int) -> None:
        """After backward, before the optimiser: change gradients (e.g. drop a frozen layer's)."""

    def end_step(self) -> None:
        """After the optimiser step (e.g. move an EMA target)."""

    def write_artifacts(self, out: Path, dataset: Dataset, size: int, seed: int) -> None:
        """When a run ends: anything a person should look at besides the metrics (e.g. MAE's recon.png)."""


class TemporalClassification(Method):
    """Baby-vision temporal classification: trunk -> Linear(feat_dim, n_classes) -> cross-entropy."""

    def __init__(self, trunk: nn.Module, feat_dim: int, n_classes: int):
        super().__init__()
        self.trunk = trunk
        self.classifier = nn.Linear(feat_dim, n_classes)
        self.loss = TemporalClassificationLoss()

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return self.loss(self.classifier(self.trunk(views[0])), labels)


class SimCLR(Method):
    """SimCLR: every view through trunk + projection MLP, NT-Xent over all views (gathered across ranks).

    Views of one size go through in one pass; local crops (multi-crop) are further positives of their image.
    """

    def __init__(self, trunk: nn.Module, feat_dim: int, proj_hidden: int, proj_dim: int, temperature: float):
        super().__init__()
        self.trunk = trunk
        self.projector = mlp(feat_dim, proj_hidden or feat_dim, proj_dim)
        self.classifier = None
        self.loss = NTXentLoss(temperature)

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        z = torch.cat([self.projector(self.trunk(x)) for x in same_size_runs(views)])
        return self.loss(z.view(len(views), views[0].shape[0], -1))


class MoCo(Method):
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
        self.key_trunk, self.key_head = frozen_copy(trunk), frozen_copy(self.head)
        self.queue = KeyQueue(dim, queue_size, seed)
        self.momentum = momentum
        self.classifier = None
        self.loss = MoCoLoss(temperature)

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


class BYOL(Method):
    """BYOL: online trunk + projector + predictor; target trunk + projector, an EMA of the online ones.

    Each view's prediction regresses the target projection of the other view (:class:`BYOLLoss`).
    The checkpoint trunk is the online one (BYOL evaluates the online encoder).
    """

    def __init__(self, trunk: nn.Module, feat_dim: int, cfg: ByolConfig):
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


def same_size_runs(views: list[torch.Tensor]) -> list[torch.Tensor]:
    """Consecutive views of one size concatenated: one forward pass per crop size (DINO's multi-crop)."""
    runs: list[list[torch.Tensor]] = []
    for v in views:
        if runs and runs[-1][0].shape[-2:] == v.shape[-2:]:
            runs[-1].append(v)
        else:
            runs.append([v])
    return [torch.cat(r) for r in runs]


class DINO(Method):
    """DINO: a student (trunk + DINO head) matches an EMA teacher on every view but the teacher's own.

    ``views[:global_views]`` are the global crops (the teacher sees only those), any further views
    the local crops. The teacher is built without drop-path and starts as a copy of the student.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, feat_dim: int, cfg: DinoConfig, global_views: int):
        super().__init__()
        self.student_trunk, self.teacher_trunk = student, teacher
        self.student_head = DINOHead(feat_dim, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim,
                                     norm_last_layer=cfg.norm_last_layer)
        self.teacher_head = frozen_copy(self.student_head)
        self.teacher_trunk.load_state_dict(self.student_trunk.state_dict())
        self.teacher_trunk.requires_grad_(False)  # built apart (no drop-path), so not a frozen_copy
        self.loss = DINOLoss(cfg.out_dim, cfg.student_temp, cfg.center_momentum)
        self.cfg, self.global_views = cfg, global_views
        self.classifier = None
        self.teacher_temp, self.momentum = cfg.warmup_teacher_temp, cfg.momentum

    @property
    def trunk(self) -> nn.Module:
        """The teacher's trunk: the network DINO evaluates and publishes."""
        return self.teacher_trunk

    def teacher_parameters(self) -> list[nn.Parameter]:
        return [*self.teacher_trunk.parameters(), *self.teacher_head.parameters()]

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        b, g = views[0].shape[0], self.global_views
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_trunk(torch.cat(views[:g])))
        student = torch.cat([self.student_head(self.student_trunk(x)) for x in same_size_runs(views)])
        return self.loss(student.view(len(views), b, -1), teacher.view(g, b, -1), self.teacher_temp)

    def begin_step(self, step: int, total: int) -> dict[str, float]:
        c = self.cfg
        self.teacher_temp = warmup_then_constant(step, c.warmup_teacher_temp_steps, c.warmup_teacher_temp,
                                                 c.teacher_temp)
        self.momentum = momentum_at(step, total, c.momentum)
        return {"teacher_temp": self.teacher_temp, "teacher_momentum": self.momentum}

    def before_optimizer_step(self, step: int) -> None:
        if step < self.cfg.freeze_last_layer_steps:
            for p in self.student_head.last_layer.parameters():
                p.grad = None

    def end_step(self) -> None:
        ema_update(self.teacher_parameters(), [*self.student_trunk.parameters(), *self.student_head.parameters()],
                   self.momentum)


class MaskedAutoencoder(MAE, Method):
    """MAE (:mod:`headcam.train.mae`) under the loop's hooks; leaves ``recon.png`` in the run directory."""

    def write_artifacts(self, out: Path, dataset: Dataset, size: int, seed: int) -> None:
        write_reconstructions(self, dataset, out / "recon.png", size, seed=seed)


def build_method(cfg: TrainConfig, trunk: nn.Module, feat_dim: int, *, n_classes: int | None,
                 world: int) -> Method:
    """The wrapper for ``cfg.method`` around ``trunk``; user errors (labels, queue size) as UsageError."""
    if cfg.method == "tc":
        if not n_classes:
            raise UsageError("method tc needs class labels, and this dataset has no classes")
        return TemporalClassification(trunk, feat_dim, n_classes)
    if cfg.method == "simclr":
        return SimCLR(trunk, feat_dim, cfg.simclr.proj_hidden, cfg.simclr.proj_dim, cfg.simclr.T)
    if cfg.method == "byol":
        return BYOL(trunk, feat_dim, cfg.byol)
    if cfg.method == "dino":
        teacher, _ = build_backbone(cfg.arch, cfg.small_stem)  # no drop-path in the teacher
        return DINO(trunk, teacher, feat_dim, cfg.dino, resolved_n_views(cfg))
    if cfg.method == "mae":
        if cfg.arch not in VITS:
            raise UsageError(f"method mae needs a ViT arch ({', '.join(VITS)}), got {cfg.arch}")
        m = cfg.mae
        return MaskedAutoencoder(trunk, m.mask_ratio, m.norm_pix_loss, m.decoder_width, m.decoder_depth,
                                 m.decoder_heads)
    m = cfg.moco
    global_batch = cfg.batch_size * world
    if m.queue % global_batch:
        fit = max(1, m.queue // global_batch) * global_batch
        raise UsageError(f"moco.queue={m.queue} must be a multiple of the global batch {global_batch} "
                         f"(batch_size x ranks); e.g. moco.queue={fit}")
    return MoCo(trunk, feat_dim, m.dim, m.queue, m.m, m.T, m.mlp, cfg.seed)
