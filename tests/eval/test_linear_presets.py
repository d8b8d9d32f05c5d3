"""The linear-probe presets (``headcam-eval linear --recipe``) hold their references' values, and the probe does
what they say: views recomputed every epoch, DINO's schedule, eminorhan/mae's BatchNorm head, best and final
epoch reported and labelled, headcam's probe unchanged.

References (commits as in configs/REFERENCES.md): fd = facebookresearch/dino@7c446df, ed = eminorhan/dino@83243f1,
em = eminorhan/mae@a0d9041, bv = eminorhan/baby-vision@f0340ac.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from headcam.eval.cli import main
from headcam.eval.decode import DecodeOptions, decode
from headcam.eval.features import view_features
from headcam.eval.linear import ProbeRun, linear_decode, prepare_model
from headcam.eval.linear_presets import LINEAR_PRESETS, LINEAR_RECIPES, RRC_FLIP, linear_preset
from headcam.eval.models import load_model
from headcam.eval.probes import build_head, build_optimizer, linear_probe
from headcam.eval.protocols import resolve_protocol
from headcam.eval.report import BEST_NOTE, write_report
from headcam.pipelines.spec import resolve_spec
from headcam.shards.dataset import open_dataset

# What each reference does, transcribed from its code (not from headcam's table).
REFERENCE = {
    "dino": dict(
        optimizer="sgd", momentum=0.9, weight_decay=0.0,  # fd/eval_linear.py:103-107
        lr=0.001,  # fd/eval_linear.py:266 --lr default
        lr_scale_batch=256,  # fd/eval_linear.py:105 lr * (batch_size_per_gpu * world_size) / 256
        schedule="cosine",  # fd/eval_linear.py:109 CosineAnnealingLR(optimizer, epochs, eta_min=0)
        batch_size=128 * 8,  # fd/eval_linear.py:270 128 per GPU; fd/README.md:263 --nproc_per_node=8
        epochs=100,  # fd/eval_linear.py:265
        head_init="normal",  # fd/eval_linear.py:243-244 normal_(0, 0.01), bias zero_()
        batchnorm=False, standardise=False,  # fd/eval_linear.py:162-173 raw features into the linear layer
        reports_best=True,  # fd/eval_linear.py:131-135 validated every epoch, best_acc = max(...)
        precision="fp32"),  # no autocast anywhere in fd/eval_linear.py
    "eminorhan": dict(
        optimizer="adam", weight_decay=0.0,  # ed/eval_linear.py:120 Adam(params, lr=args.lr)
        lr=0.0005, lr_scale_batch=None,  # ed/eval_scripts/eval_linear_*.sh --lr 0.0005 (absolute)
        schedule="constant", batch_size=1024,  # ed/eval_scripts/eval_linear_*.sh --batch_size 1024
        epochs=50,  # ed/eval_scripts/eval_linear_{core50,ecoset,imagenet,places365}.sh --epochs 50
        head_init="normal",  # ed/eval_linear.py:277-278
        batchnorm=False, standardise=False, reports_best=True,  # ed/eval_linear.py:143 best_acc = max(...)
        precision="fp32"),
    "eminorhan-mae": dict(
        optimizer="adam", weight_decay=0.0, lr=0.0005, lr_scale_batch=None,  # em/eval_linear.py:186; scripts
        schedule="constant", batch_size=1024, epochs=50,  # em/eval_scripts/eval_linear_imagenet.sh
        head_init="trunc_normal",  # em/eval_linear.py:165 trunc_normal_(head.weight, std=0.01)
        batchnorm=True,  # em/eval_linear.py:169 BatchNorm1d(in_features, affine=False, eps=1e-6)
        standardise=False, reports_best=True,  # em/eval_linear.py:209 max_accuracy
        precision="fp16"),  # em/engine_finetune.py:42 torch.cuda.amp.autocast()
    "baby-vision": dict(
        optimizer="adam", weight_decay=0.0, lr=0.0005,  # bv/linear_decoding.py:31-32, :171
        lr_scale_batch=None, schedule="constant",
        batch_size=256,  # bv/linear_decoding.py:28
        epochs=100,  # bv/linear_decoding.py:26
        head_init="torch",  # bv/linear_decoding.py:167 a fresh nn.Linear
        batchnorm=False, standardise=False,  # bv/linear_decoding.py:225 model(images): raw features
        reports_best=False,  # bv/linear_decoding.py:181-188 validated once, after the loop
        precision="fp32", views=None),  # bv/linear_decoding.py:65 ToTensor + Normalize, no augmentation
    "headcam": dict(optimizer="adam", lr=5e-4, batch_size=1024, epochs=100, standardise=True, head_init="torch",
                    batchnorm=False, reports_best=False, views=None, schedule="constant"),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_each_preset_holds_its_references_values(name):
    preset = LINEAR_PRESETS[name]
    for key, value in REFERENCE[name].items():
        assert getattr(preset, key) == value, (name, key)
    assert not (preset.standardise and preset.views is not None)  # standardising is fitted on fixed features
    assert preset.deviations and preset.reference


def test_presets_resolve_the_scripts_epochs_lr_and_variants():
    dino, em = LINEAR_PRESETS["dino"], LINEAR_PRESETS["eminorhan"]
    assert dino.effective_lr(dino.lr, dino.batch_size) == pytest.approx(0.001 * 1024 / 256)
    assert dino.effective_lr(dino.lr, 128) == pytest.approx(0.0005)  # the scaling rule follows the batch
    assert em.effective_lr(em.lr, 256) == em.lr  # eminorhan's lr is absolute
    # ed/eval_scripts/eval_linear_labeled_s.sh:34, _konkle.sh:34 --epochs 300; the others 50
    assert [em.epochs_for(p) for p in ("labeled-s", "konkle-objects", "core50", "imagenet", "ecoset")] == [
        300, 300, 50, 50, 50]
    assert LINEAR_PRESETS["eminorhan-mae"].epochs_for("labeled-s") == 300  # em/eval_scripts/eval_linear_labeled_s.sh
    assert dino.epochs_for("labeled-s") == 100
    assert em.for_method("mae").name == "eminorhan-mae" and em.for_method("dino").name == "eminorhan"
    assert dino.for_method("mae") is dino and em.for_method(None) is em
    assert LINEAR_RECIPES == ("headcam", "dino", "eminorhan", "baby-vision") and linear_preset("dino") is dino


def test_reference_train_views_are_random_resized_crop_and_flip_only():
    """fd/eval_linear.py:86-87, ed/eval_linear.py:73-74, em/eval_linear.py:94-95: RandomResizedCrop(224) with
    torchvision's defaults (scale 0.08-1, ratio 3/4-4/3, bilinear) and RandomHorizontalFlip() (p 0.5), nothing
    else."""
    spec = resolve_spec(RRC_FLIP[0], list(RRC_FLIP[1]))
    assert spec.random_crop and spec.crop.scale == (0.08, 1.0) and spec.crop.interpolation == "bilinear"
    assert spec.crop.ratio == pytest.approx((3 / 4, 4 / 3)) and spec.flip_p == 0.5
    assert spec.jitter.p == 0 and spec.grayscale_p == 0 and spec.blur.p == 0 and not spec.blur.p_views
    assert spec.solarize.p == 0 and not spec.solarize.p_views and spec.local.n == 0 and not spec.needs_fixation
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)
    for name in ("dino", "eminorhan", "eminorhan-mae"):
        assert LINEAR_PRESETS[name].views == RRC_FLIP


def test_vit_features_per_size():
    """fd/eval_linear.py:256-259 (n_last_blocks 4, no avgpool: ViT-S and the default) and fd/README.md:340
    (ViT-B: --n_last_blocks 1 --avgpool_patchtokens true); ed/eval_linear.py:175-176 the last CLS for all."""
    dino, em = LINEAR_PRESETS["dino"], LINEAR_PRESETS["eminorhan"]
    assert dino.vit_features_for("vit_small_patch16", "cls") == "last4"
    assert dino.vit_features_for("vit_base_patch16", "cls") == "last1+avgpool"
    assert dino.vit_features_for("vit_base_patch14", "cls") == "last1+avgpool"
    assert dino.vit_features_for("vit_large_patch16", "cls") == "last4"  # the parser's defaults
    assert dino.vit_features_for("vit_small_patch16", "last2") == "last2"  # --vit-features given: it wins
    assert dino.vit_features_for("resnet18", "cls") == "cls"  # CNNs: pooled features
    assert em.vit_features_for("vit_base_patch14", "cls") == "cls"
    assert LINEAR_PRESETS["headcam"].vit_features_for("vit_small_patch16", "last4") == "last4"
    torch.manual_seed(0)
    mini, feats = prepare_model(load_model("random:vit_mini_patch4"), dino, "cls")
    assert feats == "last4" and mini.feat_dim == 4 * 128 and mini.identity.endswith("vit-features=last4:precision=fp32")
    x = torch.randn(2, 3, 32, 32)
    vit = mini.trunk.trunk.vit
    with torch.no_grad():
        # DINO's features: the final-norm CLS of each of the last 4 blocks (fd/eval_linear.py:166-167)
        tokens = vit.patch_embed(x)
        tokens = vit._pos_embed(tokens)
        tokens = vit.norm_pre(tokens)
        outs = []
        for block in vit.blocks:
            tokens = block(tokens)
            outs.append(vit.norm(tokens)[:, 0])
        assert torch.allclose(mini.trunk(x), torch.cat(outs[-4:], dim=-1), atol=1e-5)
    base, feats = prepare_model(load_model("random:vit_base_patch16"), dino, "cls")
    assert feats == "last1+avgpool" and base.feat_dim == 2 * 768


def planted(n: int, d: int = 8, c: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, np.argmax(x @ rng.normal(size=(d, c)), axis=1)


def test_per_epoch_features_are_drawn_every_epoch_and_best_and_final_are_both_kept():
    x, y = planted(400)
    asked = []

    def train_epoch(epoch: int):
        asked.append(epoch)
        noise = np.random.default_rng(epoch).normal(scale=0.3, size=(200, 8)).astype(np.float32)
        return x[:200] + noise, y[:200]

    res = linear_probe(None, y[:200], x[200:], y[200:], 3, LINEAR_PRESETS["dino"], epochs=6, lr=0.5, batch_size=32,
                       train_epoch=train_epoch)
    assert asked == list(range(6))
    assert len(res.per_epoch) == 6 and res.top1 == res.per_epoch[-1][0] and res.top5 == res.per_epoch[-1][1]
    epoch, top1, top5 = res.best()
    assert top1 == max(t for t, _ in res.per_epoch) and res.per_epoch[epoch] == (top1, top5)
    assert top1 > 80
    fixed = linear_probe(x[:200], y[:200], x[200:], y[200:], 3, LINEAR_PRESETS["baby-vision"], epochs=3, lr=1e-2,
                         batch_size=32)
    assert fixed.per_epoch is None and fixed.best() is None  # baby-vision tests once, after the last epoch


def test_dino_schedule_is_cosine_annealing_per_epoch_from_the_scaled_lr():
    preset = LINEAR_PRESETS["dino"]
    head = build_head(16, 4, init=preset.head_init, batchnorm=preset.batchnorm)
    assert head.bias.abs().max() == 0 and abs(float(head.weight.detach().std()) - 0.01) < 0.003
    lr = preset.effective_lr(preset.lr, preset.batch_size)
    opt, schedule = build_optimizer(head, preset, lr, 100)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 0
    seen = []
    for _ in range(100):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    # CosineAnnealingLR(T_max=epochs, eta_min=0) stepped once per epoch: lr_e = lr (1 + cos(pi e / E)) / 2
    assert seen == pytest.approx([0.004 * (1 + math.cos(math.pi * e / 100)) / 2 for e in range(100)], rel=1e-9)


def test_eminorhan_mae_head_is_a_parameter_free_batchnorm_then_linear():
    preset = LINEAR_PRESETS["eminorhan-mae"]
    torch.manual_seed(0)
    head = build_head(64, 5, init=preset.head_init, batchnorm=preset.batchnorm)
    bn, linear = head
    assert isinstance(bn, torch.nn.BatchNorm1d) and not bn.affine and bn.eps == 1e-6 and bn.track_running_stats
    assert linear.bias.abs().max() == 0 and abs(float(linear.weight.detach().std()) - 0.01) < 0.002
    assert [p.shape for p in head.parameters()] == [torch.Size([5, 64]), torch.Size([5])]
    x, y = planted(600, d=64, c=5)
    x = x * 40 + 7  # far from standardised: the BatchNorm has to do it
    res = linear_probe(None, y[:400], x[400:], y[400:], 5, preset, epochs=8, lr=1e-2, batch_size=64,
                       train_epoch=lambda e: (x[:400], y[:400]))
    assert res.best()[1] > 70
    # the readout folded onto the raw features (BatchNorm running statistics) predicts as the head does
    assert np.mean((x[400:] @ res.weight.T + res.bias).argmax(1) == res.scores.argmax(1)) > 0.99


def test_views_differ_between_epochs_and_repeat_within_one(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    plan = resolve_protocol("splits", ds)
    torch.manual_seed(0)
    model = load_model("random:resnet18")
    spec = resolve_spec(RRC_FLIP[0], list(RRC_FLIP[1]))
    kw = dict(spec=spec, size=32, batch_size=16)
    a, b = (view_features(model, ds, plan.train.splits, plan.train.keys, epoch=e, **kw) for e in (0, 1))
    again = view_features(model, ds, plan.train.splits, plan.train.keys, epoch=0, **kw)
    assert len(a.keys) == len(plan.train.keys) == 27 and sorted(a.keys) == sorted(plan.train.keys)
    assert list(a.keys) == list(b.keys)
    assert np.array_equal(a.feats, again.feats)  # seeded per (seed, epoch, batch)
    assert np.abs(a.feats - b.feats).mean() > 1e-3 * np.abs(a.feats).mean()  # another epoch, other views


def test_headcam_preset_is_the_probe_of_earlier_reports(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    plan = resolve_protocol("splits", ds)
    opts = DecodeOptions(size=32, epochs=20, probe_batch_size=8)
    preset = LINEAR_PRESETS["headcam"]
    model, _ = prepare_model(load_model("pixels"), preset, "cls")
    new = linear_decode(model, plan, opts, preset, ProbeRun(epochs=20, lr=5e-4, batch_size=8))
    old = decode(load_model("pixels"), plan, opts, "adam")
    assert np.array_equal(new.probe.scores, old.probe.scores) and new.row["top1"] == old.row["top1"]
    assert new.row["probe"] == "adam" and new.row["recipe"] == "headcam" and "best_top1" not in new.row


def test_report_labels_final_and_best_epoch(tmp_path):
    rows = [{"model": "a", "protocol": "splits", "recipe": "dino", "probe": "dino", "top1": 50.0, "top5": 90.0,
             "best_top1": 60.0, "best_top5": 95.0, "best_epoch": 3, "epochs": 5, "n_train": 9, "n_test": 3},
            {"model": "b", "protocol": "splits", "recipe": "baby-vision", "probe": "baby-vision", "top1": 40.0,
             "top5": 80.0, "epochs": 5, "n_train": 9, "n_test": 3}]
    write_report(tmp_path / "r", rows, {"command": "linear"})
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| top1 (final epoch) | top5 (final epoch) | top1 (best epoch) | top5 (best epoch) | best epoch |" in md
    assert "| a | splits | dino | 50.00 | 90.00 | 60.00 | 95.00 | 3 | 5 |" in md
    assert "| b | splits | baby-vision | 40.00 | 80.00 |  |  |  | 5 |" in md and BEST_NOTE in md
    write_report(tmp_path / "h", rows[1:], {"command": "linear"})
    assert "best epoch" not in (tmp_path / "h" / "report.md").read_text()


def _mae_checkpoint(path):
    torch.manual_seed(1)
    vit = load_model("random:vit_mini_patch4").trunk
    torch.save({"format": "headcam-checkpoint", "version": 1, "arch": "vit_mini_patch4", "small_stem": False,
                "method": "mae", "backbone": vit.state_dict()}, path)
    return path


@pytest.mark.parametrize("recipe", LINEAR_RECIPES)
def test_cli_runs_each_recipe_and_reports_its_settings(tiny_dataset, tmp_path, capsys, recipe):
    out = tmp_path / recipe
    models = ["--model", "random:resnet18", "--model", "random:vit_mini_patch4"]
    if recipe == "eminorhan":
        models += ["--model", str(_mae_checkpoint(tmp_path / "mae.pt")), "--name", "resnet", "--name", "vit",
                   "--name", "mae"]
    code = main(["linear", "--recipe", recipe, *models, "--data", str(tiny_dataset), "--size", "32",
                 "--batch-size", "16", "--epochs", "2", "--probe-batch-size", "8", "--no-cache", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    report = json.loads((out / "report.json").read_text())
    settings = report["probe_settings"]
    assert settings["recipe"] == recipe and settings["epochs"] == 2 and settings["batch_size"] == 8
    assert settings["overridden"] == ["--epochs", "--probe-batch-size"]
    rows = report["results"]
    expected = {"eminorhan": ["eminorhan", "eminorhan", "eminorhan-mae"]}.get(recipe, [recipe] * 2)
    assert [r["recipe"] for r in rows] == expected and set(settings["recipes"]) == set(expected)
    for row in rows:
        used = settings["recipes"][row["recipe"]]
        assert used["run"]["epochs"] == 2 and used["lr"] == LINEAR_PRESETS[row["recipe"]].lr
        assert used["test_interpolation"] == ("bilinear" if recipe == "headcam" else "bicubic")
        assert used["run"]["lr_effective"] == LINEAR_PRESETS[row["recipe"]].effective_lr(used["run"]["lr"], 8)
        assert row["n_train"] == 27 and row["n_test"] == 9 and np.isfinite(row["top1"])
        assert ("best_top1" in row) == used["reports_best"]
        if used["reports_best"]:
            assert len(row["top1_per_epoch"]) == 2 and row["top1_per_epoch"][-1] == row["top1"]
    vit = rows[1]
    assert vit["vit_features"] == {"dino": "last4"}.get(recipe, "cls")
    assert vit["feat_dim"] == (4 * 128 if recipe == "dino" else 128)
    md = (out / "report.md").read_text()
    assert f"recipe `{recipe}`:" in md and "differs from the reference:" in md
