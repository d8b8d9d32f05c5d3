"""Multi-crop and the per-view recipes through ``headcam-train``: DINO with global + local crops (ViT-S/16 at
32 px, locals at 16), BYOL on its own recipe; SimCLR takes local crops (one pass per size); the methods that
take none refuse them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from headcam.console import UsageError
from headcam.train.cli import main
from headcam.train.config import load_train_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = ["size=32", "batch_size=8", "workers=0", "log_every=1", "ckpt_every=1000", "shuffle_buffer=16",
        "optim.warmup_steps=0", "device=cpu", "steps=2"]
SMALL = {"dino": ["arch=vit_small_patch16", "optim.name=adamw", "augment.local.n=2", "augment.local.size=16",
                  "dino.out_dim=256", "dino.hidden_dim=64", "dino.bottleneck_dim=32"],
         "byol": ["arch=resnet18", "byol.proj_hidden=64", "byol.pred_hidden=64"]}


@pytest.mark.parametrize("method", list(SMALL))
def test_trains_two_steps_with_its_views(method, tiny_dataset, tmp_path):
    run = tmp_path / method
    args = [f"data={tiny_dataset}", f"out={run}", f"method={method}", *TINY, *SMALL[method]]
    assert main([str(CONFIGS / "demo.yaml"), *args]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)


def test_simclr_takes_local_crops_one_pass_per_size():
    import torch

    from headcam.train.backbones import build_backbone
    from headcam.train.methods.base import MethodContext
    from headcam.train.methods.simclr import SimCLR
    from headcam.train.registry import SimclrConfig

    trunk, dim = build_backbone("resnet18", small_stem=True)
    ctx = MethodContext(arch="resnet18", small_stem=True, n_classes=None, world=1, batch_size=4, global_views=2,
                        seed=0, new_trunk=lambda: trunk)
    model = SimCLR(trunk, dim, SimclrConfig(T=0.1, proj_hidden=32, proj_dim=16), ctx)
    views = [torch.randn(4, 3, 32, 32)] * 2 + [torch.randn(4, 3, 16, 16)] * 2
    loss = model(views, torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert torch.isfinite(loss) and trunk.conv1.weight.grad is not None
    assert load_train_config(None, ["method=simclr", "data=x", "augment.local.n=2"]).augment.local.n == 2


def test_recipes_and_overrides_resolve():
    dino = load_train_config(None, ["method=dino", "data=x", "augment.local.n=3", "augment.local.scale=[0.1,0.3]"])
    assert dino.recipe == "dino" and dino.augment.local.n == 3 and dino.augment.local.scale == (0.1, 0.3)
    assert dino.augment.blur.p_views == (1.0, 0.1) and dino.augment.solarize.p_views == (0.0, 0.2)
    byol = load_train_config(None, ["method=byol", "data=x"])
    assert byol.recipe == "byol" and byol.augment.solarize.p_views == (0.0, 0.2)
    say = load_train_config(CONFIGS / "dino_say_vits16.yaml", ["data=x"])
    assert say.augment.local.n == 8 and say.augment.local.scale == (0.05, 0.2) and say.augment.crop.scale == (0.2, 1)


@pytest.mark.parametrize("method", ["tc", "moco", "moco_temporal", "byol", "mae"])
def test_methods_without_local_crops_refuse_them(method):
    with pytest.raises(UsageError, match=f"method {method} takes no local crops"):
        load_train_config(None, [f"method={method}", "data=x", "arch=vit_small_patch16", "recipe=dino"])


def test_vit_local_side_must_be_whole_patches():
    with pytest.raises(UsageError, match="local crops are 14 px"):
        load_train_config(None, ["method=dino", "data=x", "arch=vit_small_patch16", "size=32"])


def test_a_published_config_with_8_workers_trains_on_a_small_dataset(tiny_dataset, tmp_path, capsys):
    """byol_resnet50.yaml says ``workers: 8``; tiny_dataset's 3 train shards feed 3: one line says so, and it trains."""
    run = tmp_path / "byol"
    args = [f"data={tiny_dataset}", f"out={run}", *[a for a in TINY if not a.startswith("workers=")], *SMALL["byol"],
            "optim.name=adam", "optim.lr=1e-3"]
    assert main([str(CONFIGS / "byol_resnet50.yaml"), *args]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "DataLoader workers" in line]
    assert notes == ["headcam: 3 shard(s) for 1 rank(s): using 3 DataLoader workers instead of 8"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
