"""``precision: fp32 | bf16 | fp16``: the fp16 GradScaler step (DINO's ``--use_fp16`` order), its checkpointed
state, the resolved precision per recipe, and the deprecated ``bf16`` key.

The scaler's logic runs here on the CPU (torch's GradScaler takes ``"cpu"``); fp16 autocast itself is CUDA only
and is trained by the ``gpu`` test at the end.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from _train_helpers import DEMO, TINY, load, metrics
from torch import nn

from headcam.console import UsageError
from headcam.train import checkpoint
from headcam.train.cli import main
from headcam.train.config import load_train_config
from headcam.train.optim import clip_gradients, scaled_step

CONFIGS = Path(DEMO).parent
#: The precision each shipped recipe asks for (its reference's), and what a run without CUDA resolves it to.
RECIPE_PRECISION = {
    "dino_original_vits16.yaml": "fp16",  # facebookresearch/dino main_dino.py:78 --use_fp16 default True
    "vicreg_resnet50.yaml": "fp16",  # facebookresearch/vicreg main_vicreg.py:128, :138-142
    "mae_say_vits16.yaml": "fp16",  # eminorhan/mae train_mae.py:162, :172 autocast + NativeScaler
    "mae_say_vitl16.yaml": "fp16",
    "dino_say_vits16.yaml": "fp32",  # eminorhan/dino train_dino.sh --use_fp16 false
    "dino_say_vitb14.yaml": "fp32",
    "dino_say_vitb16.yaml": "fp32",
    "dino_say_vitl16.yaml": "fp32",
    "dino_say_resnext50.yaml": "fp32",
    "mae_st_say_vith14.yaml": "fp32",  # eminorhan/mae_st pretrain.py --fp32 default True
    "demo.yaml": "bf16",  # no reference: headcam's default
}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3))


def _loss(net: nn.Module) -> torch.Tensor:
    x = torch.linspace(-2, 2, 24).reshape(4, 6)
    return net(x).pow(2).sum() * 10


def _params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def dino_fp16_step(model, optimizer, fp16_scaler, loss, clip_grad):
    """facebookresearch/dino main_dino.py:336-344 (the ``fp16_scaler`` branch; last-layer cancelling aside)."""
    optimizer.zero_grad()
    fp16_scaler.scale(loss).backward()
    if clip_grad:
        fp16_scaler.unscale_(optimizer)  # unscale the gradients of optimizer's assigned params in-place
        clip_gradients(model, clip_grad, "per_tensor")
    fp16_scaler.step(optimizer)
    fp16_scaler.update()


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_a_disabled_scaler_is_plain_backward_clip_step(clip):
    """fp32 and bf16 runs go through the same call with the scaler off: exactly backward, clip, step."""
    ours, plain = _net(), _net()
    opt_ours, opt_plain = (torch.optim.SGD(n.parameters(), lr=0.1, momentum=0.9) for n in (ours, plain))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    called = []
    for _ in range(3):
        opt_ours.zero_grad()
        scaled_step(_loss(ours), opt_ours, scaler, ours, clip, "per_tensor", lambda: called.append(1))
        opt_plain.zero_grad()
        _loss(plain).backward()
        if clip:
            clip_gradients(plain, clip, "per_tensor")
        opt_plain.step()
    assert called == [1, 1, 1]
    for a, b in zip(ours.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)
    assert scaler.state_dict() == {}


def test_the_scaler_unscales_before_clipping_as_dino_does():
    """The threshold is in true gradient units: the same update as DINO's fp16 branch, and as an unscaled fp32
    step (the scale is a power of 2, so unscaling is exact), though the scaled gradients are 65536x larger."""
    ours, theirs, fp32 = _net(), _net(), _net()
    opts = [torch.optim.SGD(n.parameters(), lr=0.1) for n in (ours, theirs, fp32)]
    s_ours, s_theirs = torch.amp.GradScaler("cpu"), torch.amp.GradScaler("cpu")
    opts[0].zero_grad()
    scaled_step(_loss(ours), opts[0], s_ours, ours, 0.5, "per_tensor", lambda: None)
    dino_fp16_step(theirs, opts[1], s_theirs, _loss(theirs), 0.5)
    opts[2].zero_grad()
    _loss(fp32).backward()
    assert max(p.grad.norm().item() for p in fp32.parameters()) > 0.5  # the clip bites
    clip_gradients(fp32, 0.5, "per_tensor")
    opts[2].step()
    assert max(p.grad.norm().item() for p in ours.parameters()) <= 0.5 + 1e-6
    for a, b, c in zip(ours.parameters(), theirs.parameters(), fp32.parameters(), strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, rtol=1e-6, atol=1e-7)
    assert s_ours.get_scale() == s_theirs.get_scale() == 65536.0


def test_an_inf_gradient_skips_the_step_and_halves_the_scale():
    """GradScaler.step skips the update when a gradient is inf or NaN; update() then backs the scale off by 0.5,
    and grows it x2 after growth_interval clean steps."""
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2)
    before = _params(net)
    opt.zero_grad()
    scaled_step(_loss(net) * math.inf, opt, scaler, net, 1.0, "global", lambda: None)
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), before, strict=True))
    assert scaler.get_scale() == 512.0
    for _ in range(2):
        opt.zero_grad()
        scaled_step(_loss(net), opt, scaler, net, 1.0, "global", lambda: None)
    assert not all(torch.equal(a, b) for a, b in zip(net.parameters(), before, strict=True))
    assert scaler.get_scale() == 1024.0


def test_scaler_state_round_trips_through_the_checkpoint(tmp_path):
    """make_checkpoint stores the scaler's state_dict; a weights_only load restores scale and growth tracker."""
    from headcam.train.backbones import build_backbone
    from headcam.train.methods.base import build_method

    cfg = load_train_config(DEMO, ["data=x", *TINY])
    trunk, dim = build_backbone(cfg.arch, cfg.small_stem)
    model = build_method(cfg, trunk, dim, n_classes=None, world=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=4096.0, growth_interval=10)
    net = _net()
    net_opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for loss_scale in (math.inf, 1.0, 1.0, 1.0):  # one skipped step, then three clean ones
        net_opt.zero_grad()
        scaled_step(_loss(net) * loss_scale, net_opt, scaler, net, 0.0, "global", lambda: None)
    kept = scaler.state_dict()
    assert (kept["scale"], kept["_growth_tracker"]) == (2048.0, 3)
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(checkpoint.make_checkpoint(
        model, arch=cfg.arch, small_stem=cfg.small_stem, feat_dim=dim, method=cfg.method, config={}, step=4,
        n_classes=None, optimizer=opt, scheduler=sched, scaler=scaler, epoch=0, batches=4, world=1), path)
    restored = torch.amp.GradScaler("cpu")
    restored.load_state_dict(checkpoint.load(path)["scaler"])
    assert restored.state_dict() == kept and restored.get_scale() == 2048.0


@pytest.mark.parametrize("name", sorted(RECIPE_PRECISION))
def test_each_recipe_carries_its_references_precision(name):
    """On CUDA the recipe's own precision; without CUDA every run resolves to fp32 (and is saved so)."""
    assert load_train_config(CONFIGS / name, ["data=x", "device=cuda"]).precision == RECIPE_PRECISION[name]
    assert load_train_config(CONFIGS / name, ["data=x", "device=cpu"]).precision == "fp32"


@pytest.mark.parametrize(("args", "want"), [
    (["bf16=true"], "bf16"), (["bf16=false"], "fp32"), (["bf16=false", "precision=fp16"], "fp16"), ([], "bf16")])
def test_the_deprecated_bf16_key_reads_as_a_precision(args, want):
    assert load_train_config(None, ["data=x", "device=cuda", *args]).precision == want


@pytest.mark.parametrize(("args", "says"), [
    (["precision=fp8"], "precision='fp8' is not one of: fp32, bf16, fp16"),
    (["bf16=maybe"], "config key 'bf16' (deprecated: use precision=fp32|bf16|fp16) wants bool"),
])
def test_precision_mistakes_are_one_line(args, says):
    with pytest.raises(UsageError) as e:
        load_train_config(None, ["data=x", *args])
    assert says in str(e.value) and "\n" not in str(e.value)


def test_an_fp16_run_without_cuda_trains_in_fp32_and_says_so(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([DEMO, f"data={tiny_dataset}", f"out={run}", "steps=2", *TINY, "precision=fp16",
                 "optim.clip_grad=1.0"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["precision"] == "fp32"
    assert "; fp32; " in capsys.readouterr().out
    assert load(run)["scaler"] == {}  # no scaler ran: a later fp16 run on CUDA starts its own scale


@pytest.mark.gpu
def test_cuda_fp16_trains_with_a_scaler_and_resumes_its_scale(tiny_dataset, tmp_path):
    """fp16 autocast + GradScaler on CUDA, clipped after unscaling; the scale is saved and a resumed run continues
    from it (the growth tracker counts on from the saved one)."""
    run = tmp_path / "run"
    args = [DEMO, f"data={tiny_dataset}", f"out={run}", *TINY, "device=cuda", "precision=fp16",
            "optim.clip_grad=1.0"]
    assert main([*args, "steps=3"]) == 0
    first = load(run)["scaler"]
    assert first["scale"] > 0 and first["_growth_tracker"] <= 3
    assert yaml.safe_load((run / "config.yaml").read_text())["precision"] == "fp16"
    assert main([*args, "steps=5"]) == 0
    second = load(run)["scaler"]
    # two clean steps count on from the saved tracker (a fresh scaler would hold 2); an overflow backs off instead
    assert (second["scale"], second["_growth_tracker"]) == (first["scale"], first["_growth_tracker"] + 2) or \
        second["scale"] < first["scale"]
    assert all(math.isfinite(r["loss"]) for r in metrics(run))
