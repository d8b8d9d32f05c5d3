"""Optimisers and learning-rate schedules the recipes need: Adam, SGD, LARS; linear warm-up + cosine; the
loss-scaled step of fp16 training.

LARS is written here (about 30 lines) because the PyPI package ``torchlars`` builds a CUDA
extension at install time and cannot install on a CPU-only machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling.

    [0] You, Gitman & Ginsburg 2017, "Large Batch Training of Convolutional Networks",
    https://arxiv.org/abs/1708.03888. As in SimCLR's LARS: for each weight tensor with more than
    one dimension, g <- (g + wd·w) · η‖w‖ / ‖g + wd·w‖; biases and norm parameters (1-D) get
    neither weight decay nor adaptation. Then heavy-ball momentum: v <- μv + g, w <- w − lr·v.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim > 1:
                    g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    ok = (w_norm > 0) & (g_norm > 0)
                    g = g * torch.where(ok, group["eta"] * w_norm / g_norm.clamp_min(1e-12), 1.0)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss


def param_groups(model: nn.Module, weight_decay: float, decay_1d: bool) -> list[dict]:
    """Trainable parameters in one group, or two when ``decay_1d`` is off: biases and 1-D tensors (norms)
    get no weight decay (DINO's ``get_params_groups``, MAE's ``param_groups_weight_decay``). A group's
    ``decay`` flag says whether a weight-decay schedule applies to it."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if decay_1d:
        return [{"params": [p for _, p in named], "weight_decay": weight_decay, "decay": True}]
    plain = [p for n, p in named if p.ndim <= 1 or n.endswith(".bias")]
    decayed = [p for n, p in named if not (p.ndim <= 1 or n.endswith(".bias"))]
    return [{"params": decayed, "weight_decay": weight_decay, "decay": True},
            {"params": plain, "weight_decay": 0.0, "decay": False}]


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float,
                    lars_eta: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                    decay_1d: bool = True) -> torch.optim.Optimizer:
    """Adam, AdamW and SGD use PyTorch's fused kernels (on CPU too: about 6x faster for Adam on a resnet18)."""
    groups = param_groups(model, weight_decay, decay_1d)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=True)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, eta=lars_eta)
    raise ValueError(f"unknown optimiser '{name}'")


def warmup_factor(step: int, warmup_steps: int, form: str = "ahead") -> float:
    """Multiplier of the peak lr at ``step`` < ``warmup_steps`` in each reference's linear warm-up:

    - ``ahead``: ``(step + 1) / warmup``, lr / warmup at the first step and lr at the last (headcam's default);
    - ``zero``: ``step / warmup``, 0 at the first step (facebookresearch/mae ``util/lr_sched.py``, VICReg's
      ``adjust_learning_rate``, which leave the peak to the first step after the warm-up);
    - ``linspace``: ``np.linspace(0, lr, warmup)[step]`` = ``step / (warmup - 1)``, 0 at the first step and lr at
      the last (DINO's ``cosine_scheduler``; a single warm-up step is 0).
    """
    if form == "ahead":
        return (step + 1) / warmup_steps
    if form == "zero":
        return step / warmup_steps
    if form == "linspace":
        return step / (warmup_steps - 1) if warmup_steps > 1 else 0.0
    raise ValueError(f"unknown warm-up form '{form}'")


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, final: float = 0.0,
              warmup_form: str = "ahead") -> float:
    """Multiplier of the peak lr at ``step`` (0-based): linear warm-up (:func:`warmup_factor`), then cosine to
    ``final`` (a fraction of the peak: DINO's min_lr / lr) or constant."""
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps, warmup_form)
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def build_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                   schedule: str, final: float = 0.0, warmup_form: str = "ahead") -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup_steps, schedule, final, warmup_form))


def set_weight_decay(optimizer: torch.optim.Optimizer, value: float) -> None:
    """The scheduled weight decay for this step, on the groups that decay (DINO: 0.04 -> 0.4 by a cosine)."""
    for group in optimizer.param_groups:
        if group.get("decay", True):
            group["weight_decay"] = value


def scaled_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                model: nn.Module, clip_grad: float, clip_mode: str, before_step: Callable[[], None]) -> None:
    """Backward, clip, step as DINO's ``train_one_epoch`` does with ``--use_fp16``: the loss scaled, the gradients
    unscaled before clipping (so the threshold is in true units), ``before_step`` (e.g. dropping the frozen last
    layer's gradients), then ``scaler.step``, which skips the update when a gradient is inf or NaN, and
    ``scaler.update``, which then halves the scale (and doubles it after ``growth_interval`` clean steps). A
    disabled scaler (fp32, bf16) makes this plain backward, clip, step."""
    scaler.scale(loss).backward()
    if clip_grad > 0:
        scaler.unscale_(optimizer)
        clip_gradients(model, clip_grad, clip_mode)
    before_step()
    scaler.step(optimizer)
    scaler.update()


def clip_gradients(model: nn.Module, max_norm: float, mode: str) -> None:
    """``global``: one norm over all gradients (torch's clip_grad_norm_). ``per_tensor``: each parameter's
    gradient clipped to ``max_norm`` on its own, as DINO's ``utils.clip_gradients`` does."""
    grads = [p for p in model.parameters() if p.grad is not None]
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(grads, max_norm)
        return
    for p in grads:
        torch.nn.utils.clip_grad_norm_([p], max_norm)
