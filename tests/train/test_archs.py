"""The CPU-sized ViT (``vit_mini_patch4``): it builds, takes 32-px views and 16-px local crops, and a headcam
checkpoint of it loads in ``headcam-eval``'s model loader with the same features."""

from __future__ import annotations

import pytest
import torch

from headcam.console import UsageError
from headcam.eval.models import load_model
from headcam.train import checkpoint
from headcam.train.archs import VITS, check_input_size
from headcam.train.backbones import build_backbone


def test_vit_mini_runs_a_32px_batch_and_16px_local_crops():
    torch.manual_seed(0)
    trunk, dim = build_backbone("vit_mini_patch4")
    assert dim == VITS["vit_mini_patch4"].width == 128
    assert sum(p.numel() for p in trunk.parameters()) < 2_000_000  # small enough for a CPU step
    trunk.eval()
    with torch.no_grad():
        out = trunk(torch.randn(3, 3, 32, 32))
        local = trunk(torch.randn(2, 3, 16, 16))  # DINO's local crops: 4 x 4 patches
    assert out.shape == (3, 128) and local.shape == (2, 128)
    assert torch.isfinite(out).all() and out.std() > 0
    check_input_size("vit_mini_patch4", 32)
    with pytest.raises(UsageError, match="smaller than one"):
        check_input_size("vit_mini_patch4", 3)


def test_vit_mini_checkpoint_loads_for_evaluation(tmp_path):
    torch.manual_seed(0)
    trunk, dim = build_backbone("vit_mini_patch4")
    path = tmp_path / "mini.pt"
    checkpoint.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "arch": "vit_mini_patch4",
                     "small_stem": False, "feat_dim": dim, "backbone": trunk.state_dict(), "method": "dino",
                     "config": {}, "step": 0, "n_classes": None, "head": None}, path)
    model = load_model(str(path))
    assert model.arch == "vit_mini_patch4" and model.feat_dim == 128
    x = torch.randn(2, 3, 32, 32)
    trunk.eval()
    with torch.no_grad():
        assert torch.allclose(model.trunk(x), trunk(x))
