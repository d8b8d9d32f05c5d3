"""DINO (Caron et al. 2021): a student matches an EMA teacher on every view but the teacher's own."""

from __future__ import annotations

import torch
from torch import nn

from headcam.train.ema import ema_update, frozen_copy, momentum_at, warmup_then_constant
from headcam.train.heads import DINOHead
from headcam.train.losses.dino import DINOLoss
from headcam.train.methods.base import Method, MethodContext, same_size_runs
from headcam.train.registry import DinoConfig


class DINO(Method):
    """``views[:ctx.global_views]`` are the global crops (the teacher sees only those), any further views
    the local crops. The teacher trunk is ``ctx.new_trunk()`` (built without drop-path) and starts as a
    copy of the student; the checkpoint stores the teacher's trunk, the network DINO evaluates."""

    def __init__(self, trunk: nn.Module, feat_dim: int, cfg: DinoConfig, ctx: MethodContext):
        super().__init__()
        self.student_trunk, self.teacher_trunk = trunk, ctx.new_trunk()
        self.student_head = DINOHead(feat_dim, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim,
                                     norm_last_layer=cfg.norm_last_layer)
        self.teacher_head = frozen_copy(self.student_head)
        self.teacher_trunk.load_state_dict(self.student_trunk.state_dict())
        self.teacher_trunk.requires_grad_(False)  # built apart (no drop-path), so not a frozen_copy
        self.loss = DINOLoss(cfg.out_dim, cfg.student_temp, cfg.center_momentum)
        self.cfg, self.global_views = cfg, ctx.global_views
        self.classifier = None
        self.teacher_temp, self.momentum = cfg.warmup_teacher_temp, cfg.momentum

    @property
    def trunk(self) -> nn.Module:
        """The teacher's trunk: the network DINO evaluates and publishes."""
        return self.teacher_trunk

    def monitor_note(self) -> str | None:
        if self.cfg.momentum < 0.999:
            return None
        return (f"kNN monitor: it scores DINO's teacher, an EMA of the student at momentum {self.cfg.momentum:g}: "
                "its curve stays flat for the first hundreds of steps, which is expected")

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
        self.momentum = momentum_at(step // c.momentum_stride, c.momentum_schedule_steps or total, c.momentum)
        return {"teacher_temp": self.teacher_temp, "teacher_momentum": self.momentum}

    def before_optimizer_step(self, step: int) -> None:
        if step < self.cfg.freeze_last_layer_steps:
            for p in self.student_head.last_layer.parameters():
                p.grad = None

    def end_step(self) -> None:
        ema_update(self.teacher_parameters(), [*self.student_trunk.parameters(), *self.student_head.parameters()],
                   self.momentum)
