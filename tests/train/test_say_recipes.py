"""Recipe values of issue 17 that live in the trainer, against transcriptions of the reference code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from headcam.train.backbones import build_backbone
from headcam.train.config import describe_lr, effective_lr, load_train_config
from headcam.train.methods.base import MethodContext
from headcam.train.methods.dino import DINO
from headcam.train.registry import DinoConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0):
    """eminorhan/dino (= facebookresearch/dino) utils.cosine_scheduler, transcribed in float64."""
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warmup_schedule, schedule))


def _dino(cfg: DinoConfig) -> DINO:
    student, dim = build_backbone("resnet18", small_stem=True)
    ctx = MethodContext(arch="resnet18", small_stem=True, n_classes=None, world=1, batch_size=4, global_views=2,
                        seed=0, new_trunk=lambda: build_backbone("resnet18", small_stem=True)[0])
    return DINO(student, dim, cfg, ctx)


def test_say_teacher_momentum_is_train_dino_py_indexed_at_global_iter_div_10():
    """train_dino.py: momentum_schedule = cosine_scheduler(0.9995, 1, 100, 1000); m = schedule[GLOBAL_ITER // 10]."""
    say = load_train_config(CONFIGS / "dino_say_vits16.yaml", ["data=x", "device=cpu"]).dino
    model = _dino(DinoConfig(**{**say.__dict__, "out_dim": 16, "hidden_dim": 8, "bottleneck_dim": 4}))
    reference = cosine_scheduler(0.9995, 1, 100, 1000)
    total = 385_000  # the ViT-B/14 run's iterations (three 48 h jobs)
    for step in (0, 1, 9, 10, 11, 999, 12_345, 135_000, 200_000, 384_999):
        model.begin_step(step, total)
        assert model.momentum == pytest.approx(reference[step // 10], abs=1e-15), step
    model.begin_step(384_999, total)
    assert model.momentum < 0.99967  # never near 1: the teacher keeps learning to the end


def test_original_dino_momentum_is_a_per_step_cosine_over_the_run():
    """facebookresearch/dino main_dino.py: cosine_scheduler(0.996, 1, epochs, len(data_loader))[it]."""
    model = _dino(DinoConfig(out_dim=16, hidden_dim=8, bottleneck_dim=4, momentum=0.996))
    reference = cosine_scheduler(0.996, 1, 3, 40)
    for step in range(0, 120, 7):
        model.begin_step(step, 120)
        assert model.momentum == pytest.approx(reference[step], abs=1e-15)


def test_linear_lr_scaling_and_the_summary_say_which_rate_is_used():
    original = load_train_config(CONFIGS / "dino_original_vits16.yaml", ["data=x", "device=cpu"]).optim
    assert original.lr_scaling == "linear" and effective_lr(original, 64 * 8) == pytest.approx(1e-3)
    assert describe_lr(original, 512) == "adamw lr 0.001 = 0.0005 x 512/256"
    say = load_train_config(CONFIGS / "dino_say_vits16.yaml", ["data=x", "device=cpu"])
    assert effective_lr(say.optim, 4096) == 1e-4 and describe_lr(say.optim, 4096) == "adamw lr 0.0001 (absolute)"


def test_say_dino_recipe_carries_its_precision():
    """ed/scripts/train_dino.sh: --use_fp16 false. The resolved config says fp32 even where CUDA would allow bf16."""
    say = load_train_config(CONFIGS / "dino_say_vits16.yaml", ["data=x", "device=cpu"])
    assert say.precision == "fp32"
    assert say.dino.momentum_schedule_steps == 100_000 and say.dino.momentum_stride == 10


def test_scaled_lr_reaches_the_optimizer(tiny_dataset, tmp_path, capsys):
    from _train_helpers import DEMO, TINY

    from headcam.train.cli import main

    run = tmp_path / "run"
    assert main([DEMO, f"data={tiny_dataset}", f"out={run}", "steps=1", *TINY, "optim.lr=0.032",
                 "optim.lr_scaling=linear", "optim.schedule=constant", "optim.warmup_steps=0"]) == 0
    assert "lr 0.001 = 0.032 x 8/256" in capsys.readouterr().out
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.001)
