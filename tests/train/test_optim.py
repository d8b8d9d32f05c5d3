"""LARS against its formula; warm-up + cosine schedule values; each warm-up form against its reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from headcam.train.optim import LARS, build_optimizer, lr_factor, warmup_factor


def test_lars_step_follows_formula():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS([w, b], lr=0.5, momentum=0.9, weight_decay=0.1, eta=0.01)
    w.grad = torch.tensor([[0.0, 1.0]])
    b.grad = torch.tensor([2.0])
    opt.step()
    g = torch.tensor([[0.3, 1.4]])  # grad + wd * w
    expected = torch.tensor([[3.0, 4.0]]) - 0.5 * g * (0.01 * 5.0 / g.norm())
    assert torch.allclose(w.detach(), expected)
    assert b.item() == pytest.approx(1.0 - 0.5 * 2.0)  # 1-D: no decay, no adaptation
    w.grad = torch.zeros_like(w)
    b.grad = torch.zeros_like(b)
    opt.step()  # momentum carries the previous update
    assert b.item() == pytest.approx(0.0 - 0.5 * 0.9 * 2.0)


def test_schedule_warmup_then_cosine():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(80, 100, 0, "constant") == 1.0
    assert lr_factor(30, 100, 0, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))


@pytest.mark.parametrize("name", ["adam", "sgd", "lars"])
def test_build_optimizer(name):
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(model, name, lr=0.1, weight_decay=1e-4, momentum=0.9)
    assert opt.param_groups[0]["lr"] == 0.1


def mae_warmup(epoch: float, lr: float, warmup_epochs: float) -> float:
    """facebookresearch/mae util/lr_sched.py:12-13 (the warm-up branch), epoch = step / steps per epoch."""
    return lr * epoch / warmup_epochs


def vicreg_warmup(step: int, base_lr: float, warmup_steps: int) -> float:
    """facebookresearch/vicreg main_vicreg.py adjust_learning_rate (the warm-up branch)."""
    return base_lr * step / warmup_steps


def dino_warmup(base_value: float, warmup_iters: int, start_warmup_value: float = 0.0) -> np.ndarray:
    """facebookresearch/dino utils.py cosine_scheduler's warm-up part."""
    return np.linspace(start_warmup_value, base_value, warmup_iters)


@pytest.mark.parametrize("warmup", [1, 2, 7, 3120, 25020])
def test_each_warmup_form_is_its_references_in_float64(warmup):
    lr, per_epoch = 2.4e-3, 312
    steps = sorted({*range(0, warmup, max(1, warmup // 97)), warmup - 1})
    linspace = dino_warmup(lr, warmup)
    for step in steps:
        assert lr * warmup_factor(step, warmup, "zero") == pytest.approx(
            mae_warmup(step / per_epoch, lr, warmup / per_epoch), rel=1e-13, abs=0), step
        assert lr * warmup_factor(step, warmup, "zero") == pytest.approx(vicreg_warmup(step, lr, warmup), rel=1e-15)
        assert lr * warmup_factor(step, warmup, "linspace") == pytest.approx(linspace[step], rel=1e-13, abs=0)
        assert warmup_factor(step, warmup, "ahead") == (step + 1) / warmup
    assert warmup_factor(0, warmup, "zero") == warmup_factor(0, warmup, "linspace") == 0.0
    if warmup > 1:
        assert warmup_factor(warmup - 1, warmup, "linspace") == 1.0 > warmup_factor(warmup - 1, warmup, "zero")


def test_the_cosine_after_warm_up_is_the_same_for_every_form():
    for form in ("ahead", "zero", "linspace"):
        assert lr_factor(10, 100, 10, "cosine", 0.0, form) == 1.0
        assert lr_factor(55, 100, 10, "cosine", 0.0, form) == pytest.approx(0.5)
    assert lr_factor(3, 100, 10, "cosine", 0.0, "zero") == pytest.approx(0.3)
    with pytest.raises(ValueError, match="unknown warm-up form"):
        warmup_factor(0, 10, "late")
