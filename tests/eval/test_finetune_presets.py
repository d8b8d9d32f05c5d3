"""The fine-tuning presets against the reference code: each preset's resolved values transcribed from its
scripts (file:line), MAE's layer-wise decay groups and lr schedule transcribed in float64, mixup / cutmix soft
targets, the best and final epoch labelled, and a CLI run of every preset on the tiny dataset."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from headcam.console import UsageError
from headcam.eval.cli import main
from headcam.eval.finetune import FinetuneOptions, TimmViewAugment, build_mixup, build_net, param_groups
from headcam.eval.finetune_presets import FINETUNE_PRESETS, finetune_preset
from headcam.eval.models import load_model

# eminorhan/dino@83243f1 eval_finetune.py + eval_scripts/eval_finetune_imagenet_sayavakepicutego4d.sh (ViT-B/14)
EMINORHAN = {
    "frac": 0.010147,  # sh:39 --frac_retained 0.010147
    "subset_count": "floor",  # eval_finetune.py:84 indices[:int(frac_retained * num_train)]
    # :64-71 RandomResizedCrop(input_size) + flip: 0.08-1, bilinear (torchvision's default)
    "views": ("mae", ("crop.scale=[0.08, 1.0]", "crop.interpolation=bilinear")),
    "test_resize_add": 16, "test_interpolation": "bicubic",  # :57 Resize(input_size + 16, interpolation=3)
    "features": "cls", "head": "linear",  # vision_transformer.py:203-204 head(norm(x)[:, 0])
    "head_init": "trunc_normal", "head_std": 0.02,  # vision_transformer.py _init_weights
    "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "constant",  # :96; sh --lr 0.0001
    "batch_size": 256, "epochs": 25,  # sh --batch_size 256 --epochs 25
    "layer_decay": None, "drop_path": 0.0, "mixup": 0.0, "cutmix": 0.0, "label_smoothing": 0.0,
    "rand_augment": None, "reprob": 0.0,
    "precision": "fp32",  # no autocast
    "reports_best": True, "best_top5": "max",  # :106-112 every epoch; best_acc_1 / best_acc_5 = max(...)
}
# facebookresearch/mae@efb2a80 FINETUNE.md:65-74 (ViT-B) and :84-93 (ViT-L), main_finetune.py parser defaults
MAE_B = {
    # util/datasets.py:37-48 create_transform(..., interpolation='bicubic'): RRC 0.08-1, bicubic
    "frac": 1.0, "views": ("mae", ("crop.scale=[0.08, 1.0]", "crop.interpolation=bicubic")),
    "test_interpolation": "bicubic",  # util/datasets.py:59 Resize(size, interpolation=PIL.Image.BICUBIC)
    "rand_augment": "rand-m9-mstd0.5-inc1", "reprob": 0.25,  # main_finetune.py:82, :88
    "test_resize_ratio": 224 / 256, "full_view_above": 224,  # util/datasets.py:53-57
    "head": "avgpool", "head_init": "trunc_normal", "head_std": 2e-5,  # :114-115, :257
    "optimizer": "adamw", "lr": 5e-4, "lr_scale_batch": 256,  # FINETUNE.md:72 --blr 5e-4; :269-270
    "layer_decay": 0.65, "weight_decay": 0.05, "drop_path": 0.1,  # FINETUNE.md:72-73
    "schedule": "warmup-cosine", "warmup_epochs": 5, "min_lr": 1e-6,  # :73-77
    "mixup": 0.8, "cutmix": 1.0, "label_smoothing": 0.1,  # FINETUNE.md:73; main_finetune.py:84
    "batch_size": 1024, "epochs": 100,  # FINETUNE.md:68, :71, :77 (32 x 4 nodes x 8 GPUs)
    "precision": "fp16", "reports_best": True, "best_top5": "at_best_top1",  # engine_finetune.py:55; :327
}
MAE_L = {**MAE_B, "lr": 1e-3, "layer_decay": 0.75, "epochs": 50, "drop_path": 0.2}  # FINETUNE.md:89-92
# eminorhan/mae@a0d9041 eval_finetune.py + eval_scripts/eval_finetune_imagenet_{s,b}.sh
EMINORHAN_MAE = {
    "frac": 0.02, "subset_count": "floor",  # sh --frac_retained 0.02; :99
    "test_resize_add": 32, "test_interpolation": "bicubic",  # :75 Resize(input_size + 32, interpolation=3)
    "views": ("mae", ("crop.scale=[0.08, 1.0]", "crop.interpolation=bilinear")),  # :83 RandomResizedCrop(input_size)
    "head": "batchnorm-linear", "features": "cls",  # :112 global_pool False, :141 BatchNorm1d(affine=False)
    "head_init": "trunc_normal", "head_std": 0.01,  # :138
    "optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.05, "schedule": "constant",  # :158; sh --lr 0.0001
    "batch_size": 128, "epochs": 50, "precision": "fp16", "reports_best": True,  # sh; engine_finetune.py:42
}
# headcam: SPEC §10
HEADCAM_CNN = {"frac": 0.01, "optimizer": "adam", "lr": 5e-4, "schedule": "step", "lr_drop": 0.2,
               "lr_drop_epochs": 2, "batch_size": 256, "epochs": 25, "reports_best": False, "precision": "bf16",
               "views": ("mae", ("crop.interpolation=bilinear",)), "test_interpolation": "bilinear"}
HEADCAM_VIT = {**HEADCAM_CNN, "lr": 1e-4, "lr_drop_epochs": 0}


class _Model:
    def __init__(self, arch: str, method: str | None = None):
        self.arch, self.source = arch, {"method": method} if method else {}


@pytest.mark.parametrize(("recipe", "arch", "method", "want"), [
    ("eminorhan", "vit_base_patch14", None, EMINORHAN),
    ("eminorhan", "resnext50_32x4d", None, {**EMINORHAN, "head_init": "torch", "head_std": 0.0}),  # eval_finetune.py:32
    ("eminorhan", "vit_small_patch16", "mae", EMINORHAN_MAE),
    ("mae", "vit_base_patch16", None, MAE_B),
    ("mae", "vit_large_patch16", None, MAE_L),
    ("headcam", "resnet18", None, HEADCAM_CNN),
    ("headcam", "vit_small_patch16", None, HEADCAM_VIT),
])
def test_resolved_presets_equal_the_reference_values(recipe, arch, method, want):
    got = FinetuneOptions(recipe=recipe).resolve(_Model(arch, method))
    assert {k: getattr(got, k) for k in want} == want
    settings = got.settings()
    assert settings["reference"] and settings["name"] == (recipe if not method else "eminorhan-mae")
    assert ("best epoch" in settings["reported"]) == want["reports_best"]


def test_test_views_resize_as_the_references():
    assert finetune_preset("eminorhan").test_ratio(224) == 224 / 240  # Resize(224 + 16) + CenterCrop(224)
    assert finetune_preset("eminorhan").test_ratio(32) == 32 / 48
    assert FINETUNE_PRESETS["eminorhan-mae"].test_ratio(224) == 224 / 256
    assert finetune_preset("mae").test_ratio(224) == 0.875 and finetune_preset("mae").test_ratio(448) == 1.0
    assert finetune_preset("headcam").test_ratio(96) == 0.875


def test_mae_recipe_refuses_a_cnn_and_overrides_apply():
    with pytest.raises(UsageError, match="fine-tunes ViTs"):
        FinetuneOptions(recipe="mae").resolve(_Model("resnet18"))
    with pytest.raises(UsageError, match="--lr-drop-epochs"):
        FinetuneOptions(recipe="eminorhan", lr_drop_epochs=1).check()
    got = FinetuneOptions(recipe="mae", epochs=2, batch_size=8, lr=1e-2).resolve(_Model("vit_base_patch16"))
    assert (got.epochs, got.batch_size, got.lr, got.layer_decay) == (2, 8, 1e-2, 0.65)


def _adjust_learning_rate(epoch: float, lr: float, min_lr: float, warmup: int, epochs: int) -> float:
    """facebookresearch/mae util/lr_sched.py:9-15, transcribed."""
    if epoch < warmup:
        return lr * epoch / warmup
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))


def test_mae_lr_schedule_is_lr_sched_per_step():
    preset = FinetuneOptions(recipe="mae").resolve(_Model("vit_base_patch16"))
    lr = 5e-4 * 1024 / 256  # main_finetune.py:269-270
    for t in np.linspace(0, 100, 1001)[:-1]:
        assert preset.lr_at(float(t), 1024) == pytest.approx(_adjust_learning_rate(t, lr, 1e-6, 5, 100), rel=1e-12)


def _param_groups_lrd(model, weight_decay, no_weight_decay_list, layer_decay):
    """facebookresearch/mae util/lr_decay.py:15-76 (param_groups_lrd + get_layer_id_for_vit) in float64, per
    parameter name: (lr_scale, weight_decay). ``model`` has MAE's parameter names."""
    num_layers = len(model.blocks) + 1
    layer_scales = [np.float64(layer_decay) ** (num_layers - i) for i in range(num_layers + 1)]
    out = {}
    for n, p in model.named_parameters():
        if n in ("cls_token", "pos_embed") or n.startswith("patch_embed"):
            layer_id = 0
        elif n.startswith("blocks"):
            layer_id = int(n.split(".")[1]) + 1
        else:
            layer_id = num_layers
        decay = 0.0 if p.ndim == 1 or n in no_weight_decay_list else weight_decay
        out[n] = (layer_scales[layer_id], decay)
    return out


class _MaeNames(torch.nn.Module):
    """MAE's ViT parameter names over the tuned net's tensors: the ViT's, then fc_norm and head at the top."""

    def __init__(self, net):
        super().__init__()
        vit = net.features.vit
        for name in ("cls_token", "pos_embed"):
            setattr(self, name, getattr(vit, name))
        self.patch_embed, self.blocks = vit.patch_embed, vit.blocks
        self.fc_norm, self.head = net.features.fc_norm, net.head


def test_layer_decay_groups_are_maes_param_groups_lrd():
    model = load_model("random:vit_mini_patch4")  # 6 blocks
    preset = FinetuneOptions(recipe="mae").resolve(model)
    net = build_net(model, preset, 5)
    want = _param_groups_lrd(_MaeNames(net), 0.05, {"pos_embed", "cls_token"}, 0.75)
    tensor_name = {id(p): n for n, p in _MaeNames(net).named_parameters()}
    got = {}
    for group in param_groups(net, preset):
        for p in group["params"]:
            got[tensor_name[id(p)]] = (group["lr_scale"], group["weight_decay"])
    assert set(got) == set(want) and len(got) == len(list(net.parameters()))
    for name, (scale, decay) in want.items():
        assert got[name][0] == pytest.approx(scale, rel=1e-12, abs=0), name
        assert got[name][1] == decay, name
    assert want["blocks.5.mlp.fc1.weight"][0] == pytest.approx(0.75) and want["cls_token"][0] == pytest.approx(
        0.75 ** 7)
    # drop path as timm's linspace(0, rate, depth), the head as MAE's trunc-normal 2e-5 with zero bias
    assert [b.drop_path1.drop_prob if hasattr(b.drop_path1, "drop_prob") else 0.0 for b in
            net.features.vit.blocks] == pytest.approx(np.linspace(0, 0.1, 6).tolist())
    assert 1.5e-5 < net.head.weight.std() < 2.5e-5 and not net.head.bias.any()  # cut at +-2 absolute, as MAE's
    assert isinstance(net.features.vit.norm, torch.nn.Identity)  # MAE's `del self.norm`


def test_mixup_and_cutmix_make_soft_targets():
    preset = FinetuneOptions(recipe="mae").resolve(_Model("vit_base_patch16"))
    mix = build_mixup(preset, 4)
    assert (mix.mixup_alpha, mix.cutmix_alpha, mix.mix_prob, mix.switch_prob, mix.label_smoothing) == \
        (0.8, 1.0, 1.0, 0.5, 0.1)
    np.random.seed(0)
    x, y = torch.rand(8, 3, 16, 16), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    mixed, soft = mix(x.clone(), y)
    assert soft.shape == (8, 4) and torch.allclose(soft.sum(1), torch.ones(8))
    assert (soft.max(1).values < 0.95).all()  # smoothed and mixed, never a one-hot target
    assert not torch.equal(mixed, x)
    assert build_mixup(FinetuneOptions(recipe="eminorhan").resolve(_Model("resnet18")), 4) is None


def test_timm_rand_augment_and_erasing_change_the_views():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    aug = TimmViewAugment(32, "rand-m9-mstd0.5-inc1", 1.0, mean, std)
    views = (torch.rand(4, 3, 32, 32) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    out = aug(views)
    assert out.shape == views.shape and out.dtype == torch.float32 and not torch.allclose(out, views, atol=0.05)
    same = TimmViewAugment(32, None, 0.0, mean, std)(views)  # nothing but the 8-bit round trip
    assert torch.allclose(same, views, atol=0.5 / 255 / min(std) + 1e-6)


def _run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(("recipe", "arch"), [("headcam", "resnet18"), ("eminorhan", "vit_mini_patch4"),
                                              ("mae", "vit_mini_patch4")])
def test_cli_runs_each_preset_and_labels_best_and_final(recipe, arch, tiny_dataset, tmp_path, capsys):
    out = tmp_path / recipe
    code, stdout, err = _run(["finetune", "--recipe", recipe, "--model", f"random:{arch}", "--data", str(tiny_dataset),
                              "--size", "32", "--batch-size", "16", "--no-cache", "--epochs", "2", "--frac", "0.5",
                              "--tune-batch-size", "6", "--out", str(out)], capsys)
    assert code == 0, stdout + err
    report = json.loads((out / "report.json").read_text())
    settings, row = report["probe_settings"], report["results"][0]
    assert settings["recipe"] == recipe and settings["name"] == recipe and settings["reference"]
    assert settings["test_interpolation"] == ("bilinear" if recipe == "headcam" else "bicubic")
    # 27 training samples: headcam rounds 13.5, the references take int(frac * n)
    assert settings["epochs"] == 2 and settings["frac"] == 0.5
    assert settings["subset"]["n"] == (14 if recipe == "headcam" else 13)
    assert row["recipe"] == recipe and len(row["train_loss"]) == 2 and np.isfinite(row["train_loss"]).all()
    best = FINETUNE_PRESETS[recipe].reports_best
    assert ("best_top1" in row) == best and ("best epoch" in row["reported"]) == best
    if best:  # the final epoch is top1/top5, the best one is labelled as such
        assert row["top1"] == row["top1_per_epoch"][-1] and row["best_top1"] == max(row["top1_per_epoch"])
        assert row["top1_per_epoch"][row["best_epoch"] - 1] == row["best_top1"] and len(row["top1_per_epoch"]) == 2
    if recipe == "mae":
        assert settings["layer_decay"] == 0.75 and settings["mixup"] == 0.8 and row["batch_size"] == 6
        assert row["lr"] == pytest.approx(1e-3 * 6 / 256) and row["lr_per_epoch"][0] == 0.0  # warm-up from 0
    assert f"finetune50%{'' if recipe == 'headcam' else '/' + recipe}" in stdout
