"""LARS against its formula; warm-up + cosine schedule values."""

from __future__ import annotations

import math

import pytest
import torch

from headcam.train.optim import LARS, build_optimizer, lr_factor


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
