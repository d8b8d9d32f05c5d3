"""DINO: self-distillation with no labels; a student matches a centred, sharpened teacher.

[0] DINO, Caron et al. 2021, https://arxiv.org/abs/2104.14294 (Algorithm 1; ``DINOLoss``).
[1] Orhan & Lake 2024, silicon-menagerie: the same objective on SAYCam (τ_t = 0.04 constant).

For teacher outputs t_q of the G global views (the teacher sees only those) and student outputs
s_v of all V views, with a centre c:

    L = 1/|P| · Σ_{(q, v) ∈ P} mean_batch( − Σ_k softmax((t_q − c)/τ_t)_k · log_softmax(s_v/τ_s)_k ),
    P = {(q, v): q < G, v < V, v ≠ q}

(a student view is never matched with the teacher's output of the same view). After each step
c ← μ·c + (1 − μ)·mean of the raw teacher outputs over the global batch (all-reduced over ranks),
μ = 0.9. The centre is a buffer: it is saved with the model and restored on resume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from headcam.train import dist
from headcam.train.losses.precision import full as _full


class DINOLoss(nn.Module):
    """Shape: ``student`` (V, B, K) for V views, ``teacher`` (G, B, K) for the G global views (the first
    G of the student's). ``teacher_temp`` is passed per step (it follows a schedule). Returns a scalar."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        if student_temp <= 0:
            raise ValueError(f"student temperature must be > 0, got {student_temp}")
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        n_views, n_global = student.shape[0], teacher.shape[0]
        if n_views < 2 or n_global < 1 or n_global > n_views:
            raise ValueError(f"need >= 2 student views and 1..V teacher views, got {n_views} and {n_global}")
        targets = F.softmax((_full(teacher) - self.center) / teacher_temp, dim=-1).detach()
        log_p = F.log_softmax(_full(student) / self.student_temp, dim=-1)
        total, pairs = log_p.new_zeros(()), 0
        for q in range(n_global):
            for v in range(n_views):
                if v == q:
                    continue
                total = total + (-(targets[q] * log_p[v]).sum(dim=-1)).mean()
                pairs += 1
        if self.training:
            self.update_center(teacher)
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher: torch.Tensor) -> None:
        """c ← μc + (1 − μ)·batch mean of the raw teacher outputs, over every rank's batch."""
        flat = _full(teacher).reshape(-1, teacher.shape[-1]).to(self.center.dtype)
        batch_sum = flat.sum(dim=0, keepdim=True)
        count = torch.tensor([flat.shape[0]], dtype=flat.dtype, device=flat.device)
        if dist.world_size() > 1:
            torch.distributed.all_reduce(batch_sum)
            torch.distributed.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1 - self.center_momentum)

