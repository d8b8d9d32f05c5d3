"""``headcam-export``: timm's ``local-dir:`` loader gives headcam's features from the exported folder, for every
architecture with a timm equivalent (random weights, BatchNorm statistics moved off 0 / 1); the small-stem ResNet,
which has none, loads with the card's three lines; zoo files export the same way; the card says what it must."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import timm
import torch
import torchvision
from timm.data import resolve_model_data_config

from headcam.eval.models import load_model
from headcam.train.backbones import build_backbone, build_vit
from headcam.train.export import main

TIMM_NAMES = {"resnet18": "resnet18", "resnet50": "resnet50", "resnext50_32x4d": "resnext50_32x4d",
              "mobilenet_v2": "mobilenetv2_100", "vit_small_patch16": "vit_small_patch16_224",
              "vit_base_patch14": "vit_base_patch16_224"}
TOL = 1e-5


def _with_bn_statistics(net: torch.nn.Module) -> torch.nn.Module:
    """Running statistics away from 0 / 1, so an eval-mode BatchNorm is not the identity."""
    with torch.no_grad():
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0, 0.2)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
    return net.eval()


def _checkpoint(path, arch: str, small_stem: bool = False, method: str = "simclr", size: int = 224) -> torch.nn.Module:
    """A headcam checkpoint file (the keys train/checkpoint.py documents for consumers) of a random trunk."""
    torch.manual_seed(0)
    net, dim = build_backbone(arch, small_stem, method=method)
    _with_bn_statistics(net)
    config = {"method": method, "data": "/data/saycam_s", "split": "train", "size": size, "arch": arch,
              "small_stem": small_stem, "seed": 0, "optim": {"name": "sgd", "lr": 0.03}, "pos_interp": ""}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "headcam-checkpoint", "version": 1, "arch": arch, "small_stem": small_stem,
                "feat_dim": dim, "backbone": net.state_dict(), "method": method, "config": config, "step": 5,
                "n_classes": None, "head": None}, path)
    return net


def _timm(out) -> torch.nn.Module:
    return timm.create_model(f"local-dir:{out}", pretrained=True, num_classes=0).eval()


def _max_diff(a: torch.nn.Module, b: torch.nn.Module, side: int) -> float:
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fa, fb = a(x), b(x)
    assert fa.shape == fb.shape
    return float((fa - fb).abs().max())


@pytest.mark.parametrize("arch", list(TIMM_NAMES))
def test_timm_loads_the_export_with_headcams_features(tmp_path, arch, capsys):
    ckpt, out = tmp_path / "run" / "checkpoint.pt", tmp_path / "export"
    net = _checkpoint(ckpt, arch)
    assert main([str(ckpt), str(out)]) == 0
    assert f"timm: {TIMM_NAMES[arch]}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    model = _timm(out)
    assert _max_diff(net, model, 224) <= TOL
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == TIMM_NAMES[arch] and cfg["num_classes"] == 0
    assert cfg["num_features"] == model.num_features == net(torch.zeros(1, 3, 64, 64)).shape[1]
    data = resolve_model_data_config(model)  # what timm's own transforms will do with it: headcam's eval view
    assert tuple(data["input_size"]) == (3, 224, 224) and data["interpolation"] == "bilinear"
    assert tuple(data["mean"]) == (0.485, 0.456, 0.406) and tuple(data["std"]) == (0.229, 0.224, 0.225)
    assert data["crop_pct"] == 0.875 and data["crop_mode"] == "center"
    assert cfg["headcam"]["arch"] == arch and cfg["headcam"]["source"]["method"] == "simclr"


def test_vit_export_records_its_position_resampling(tmp_path):
    ckpt, out = tmp_path / "run" / "checkpoint.pt", tmp_path / "export"
    _checkpoint(ckpt, "vit_mini_patch4", method="mae", size=32)
    assert main([str(ckpt), str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["headcam"]["pos_interp"] == "mae" and cfg["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert cfg["model_args"]["patch_size"] == 4 and cfg["model_args"]["embed_dim"] == 128
    assert "MAE's resampling" in (out / "README.md").read_text()


def test_small_stem_has_no_timm_equivalent_and_the_cards_three_lines_load_it(tmp_path, monkeypatch):
    ckpt, out = tmp_path / "cifar" / "checkpoint.pt", tmp_path / "export"
    net = _checkpoint(ckpt, "resnet18", small_stem=True, size=32)
    assert main([str(ckpt), str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "timm has no equivalent" in card and "no max-pool" in card
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) == 3
    namespace: dict = {}
    monkeypatch.chdir(out)
    exec(code, namespace)  # the card's own lines, as a reader would paste them
    assert _max_diff(net, namespace["model"], 32) <= TOL
    with pytest.raises(RuntimeError, match="Unknown model"):
        _timm(out)


def test_zoo_files_export_the_same_way(tmp_path):
    """A silicon-menagerie DINO file (teacher under module.backbone., DINO head) and a baby-vision file
    (DataParallel prefix, torchvision classifier), built in their published layouts from random networks."""
    torch.manual_seed(0)
    vit = build_vit("vit_small_patch16").eval()
    teacher = {f"module.backbone.{k}": v for k, v in vit.state_dict().items()}
    teacher.update({"module.head.mlp.0.weight": torch.randn(32, 384), "module.head.last_layer.weight_v":
                    torch.randn(64, 32)})
    dino = tmp_path / "dino_say_vits16.pth"
    torch.save({"student": teacher, "teacher": teacher, "optimizer": {}, "it": 1200, "dino_loss": {},
                "args": argparse.Namespace(arch="vit_small", patch_size=16)}, dino)
    mobile = _with_bn_statistics(torchvision.models.mobilenet_v2(weights=None, num_classes=26))
    baby = tmp_path / "TC-S-mobilenet.tar"
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in mobile.state_dict().items()}}, baby)
    for path, fmt in ((dino, "dino"), (baby, "baby-vision")):
        out = tmp_path / path.stem
        assert main([str(path), str(out)]) == 0
        ours = load_model(str(path)).trunk  # what headcam-eval evaluates
        assert _max_diff(ours, _timm(out), 224) <= TOL
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["headcam"]["source"]["format"] == fmt and cfg["headcam"]["source"]["file"] == path.name
        assert f"published {fmt} checkpoint (`{path.name}`" in (out / "README.md").read_text()


def test_a_trained_runs_card_has_method_data_steps_config_and_the_reports_results(tmp_path, tiny_dataset):
    from _train_helpers import DEMO, TINY

    from headcam.eval.cli import main as eval_main
    from headcam.train.cli import main as train_main

    run, out, report = tmp_path / "tc_run", tmp_path / "export", tmp_path / "report"
    assert train_main([DEMO, f"data={tiny_dataset}", f"out={run}", "method=tc", "steps=2", *TINY]) == 0
    assert eval_main(["knn", "--model", str(run / "checkpoint.pt"), "--model", "pixels", "--data", str(tiny_dataset),
                      "--size", "32", "--out", str(report), "--no-cache"]) == 0
    rows = json.loads((report / "report.json").read_text())["results"]
    assert main([str(run / "checkpoint.pt"), str(out), "--report", str(report), "--name", "tc-resnet18"]) == 0
    card = (out / "README.md").read_text()
    assert card.startswith("---\ntags:\n") and "library_name: timm" in card and "# tc-resnet18" in card
    assert f"headcam's `tc` for 2 optimiser steps on `{tiny_dataset}` (split `train`, 32 px views)" in card
    assert "## Training config (resolved)" in card and "batch_size: 8" in card and "arch: resnet18" in card
    assert f"`headcam-eval knn` on `{tiny_dataset}`" in card
    for r in rows:
        assert f"| {r['model']} |" in card and f"{r['top1']:.2f}" in card
    assert 'timm.create_model("local-dir:.", pretrained=True, num_classes=0)' in card
    assert "sha256" in card and "32 / 0.875 px (bilinear)" in card
    config = json.loads((out / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32] and config["headcam"]["source"]["step"] == 2
    trunk = load_model(str(run / "checkpoint.pt")).trunk  # the trained weights, heads and optimiser left behind
    assert _max_diff(trunk, _timm(out), 32) <= TOL
    assert (out / "model.safetensors").stat().st_size < (run / "checkpoint.pt").stat().st_size / 2


@pytest.mark.parametrize(("make", "argv", "message"), [
    (None, ["{tmp}/missing.pt", "{tmp}/out"], "not found"),
    (None, ["{tmp}", "{tmp}/out"], "a directory"),
    ("text", ["{tmp}/notes.pt", "{tmp}/out"], "not a torch checkpoint file"),
    ("other", ["{tmp}/other.pt", "{tmp}/out"], "nor a published one"),
    ("ckpt", ["{tmp}/run/checkpoint.pt", "{tmp}/out", "--report", "{tmp}"], "no report.json"),
])
def test_user_mistakes_are_one_line_exit_2(tmp_path, capsys, make, argv, message):
    if make == "text":
        (tmp_path / "notes.pt").write_text("hello\n")
    elif make == "other":
        torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    elif make == "ckpt":
        _checkpoint(tmp_path / "run" / "checkpoint.pt", "resnet18")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and err.startswith("headcam-export: error:")
    assert not (tmp_path / "out").exists()


def test_help_imports_no_torch():
    probe = ("import sys\nfrom headcam.train.export import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
             "    assert e.code == 0\nprint([m for m in ('torch', 'timm', 'safetensors') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "local-dir:OUT" in r.stdout and "--report" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "[]"
