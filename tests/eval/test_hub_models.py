"""``--model local-dir:PATH``, ``hf-hub:ORG/NAME`` and ``hf://ORG/REPO/FILE``: an exported folder gives the
features of the checkpoint it came from, a timm folder headcam did not write is recognised from its keys, and the
Hub specs read huggingface_hub's cache offline (``HF_HUB_OFFLINE=1``, a cache the test fills in the library's own
layout; nothing is downloaded), with a one-line error for what is not cached."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub.file_download import repo_folder_name
from timm.models import save_for_hf

from headcam.eval.cli import main as eval_main
from headcam.eval.models import load_model
from headcam.train.backbones import build_backbone
from headcam.train.export import main as export_main

REVISION = "3" * 40


def _features(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.trunk(x)


def _checkpoint(path: Path, arch: str, method: str) -> Path:
    torch.manual_seed(0)
    net, dim = build_backbone(arch, method=method)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "headcam-checkpoint", "version": 1, "arch": arch, "small_stem": False, "feat_dim": dim,
                "backbone": net.state_dict(), "method": method, "config": {"size": 32, "method": method},
                "step": 3, "n_classes": None, "head": None}, path)
    return path


def _dino_file(path: Path) -> Path:
    """A silicon-menagerie DINO training file (teacher under module.backbone., a DINO head) of a random ViT."""
    torch.manual_seed(1)
    vit, _ = build_backbone("vit_mini_patch4")
    teacher = {f"module.backbone.{k}": v for k, v in vit.state_dict().items()}
    teacher["module.head.last_layer.weight_v"] = torch.randn(16, 128)
    torch.save({"student": teacher, "teacher": teacher, "optimizer": {}, "it": 40, "dino_loss": {},
                "args": argparse.Namespace(arch="vit_mini")}, path)
    return path


def _cache_repo(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """``files`` as revision ``main`` of Hub repository ``repo`` in huggingface_hub's cache layout:
    ``models--ORG--NAME/snapshots/<commit>/FILE`` and ``refs/main`` holding the commit."""
    folder = cache / repo_folder_name(repo_id=repo, repo_type="model")
    for name, src in files.items():
        (folder / "snapshots" / REVISION / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, folder / "snapshots" / REVISION / name)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(REVISION)


def test_an_exported_folder_gives_its_checkpoints_features(tmp_path):
    # a MAE ViT evaluated at 32 px: its position table is resampled, MAE's way, on both paths
    ckpt = _checkpoint(tmp_path / "mae_run" / "checkpoint.pt", "vit_mini_patch4", "mae")
    assert export_main([str(ckpt), str(tmp_path / "vit_mae")]) == 0
    direct, exported = load_model(str(ckpt)), load_model(f"local-dir:{tmp_path / 'vit_mae'}")
    assert exported.name == "vit_mae" and exported.arch == "vit_mini_patch4"
    assert exported.source["pos_interp"] == "mae" and exported.source["exported_from"] == "headcam"
    assert exported.source["method"] == "mae" and exported.source["step"] == 3
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(_features(direct, x), _features(exported, x))
    assert exported.identity == load_model(f"local-dir:{tmp_path / 'vit_mae'}").identity != direct.identity


@pytest.mark.parametrize(("timm_name", "arch"), [("resnet18", "resnet18"), ("mobilenetv2_100", "mobilenet_v2")])
def test_a_timm_folder_headcam_did_not_write_is_recognised_from_its_keys(tmp_path, timm_name, arch):
    torch.manual_seed(0)
    net = timm.create_model(timm_name, pretrained=False, num_classes=10).eval()  # with its classifier
    save_for_hf(net, str(tmp_path / "timm_out"), safe_serialization=True)  # timm's own writer
    model = load_model(f"local-dir:{tmp_path / 'timm_out'}")
    assert model.arch == arch and model.source["format"] == "timm" and model.feat_dim == net.num_features
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = net.forward_head(net.forward_features(x), pre_logits=True)
    assert float((_features(model, x) - want).abs().max()) <= 1e-5


#: In one process (torch imports once): each spec's features on the saved images, then headcam-eval on its argv.
PROBE = """
import sys, torch
from headcam.eval.models import load_model
from headcam.eval.cli import main
x, specs, argv = torch.load(sys.argv[1]), sys.argv[3].split(","), sys.argv[4:]
feats = {}
for spec in specs:
    model = load_model(spec)
    with torch.no_grad():
        feats[spec] = model.trunk(x)
    feats[spec + " name"] = model.name
torch.save(feats, sys.argv[2])
sys.exit(main(argv))
"""


def _offline(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "hf_home"),
            "HEADCAM_QUIET": "1", "OMP_NUM_THREADS": "1"}


def test_hub_specs_read_the_cache_offline(tmp_path, tiny_dataset):
    ckpt = _checkpoint(tmp_path / "run" / "checkpoint.pt", "resnet18", "simclr")
    export = tmp_path / "export"
    assert export_main([str(ckpt), str(export)]) == 0
    zoo = _dino_file(tmp_path / "dino_say_vitmini.pth")
    cache = tmp_path / "hub"
    _cache_repo(cache, "someone/headcam-resnet18", {"config.json": export / "config.json",
                                                    "model.safetensors": export / "model.safetensors",
                                                    "README.md": export / "README.md"})
    _cache_repo(cache, "eminorhan/zoo", {"dino/dino_say_vitmini.pth": zoo})
    x = torch.randn(2, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    specs = ["hf-hub:someone/headcam-resnet18", "hf://eminorhan/zoo/dino/dino_say_vitmini.pth"]
    # headcam-eval itself too: the same kNN numbers as from the local files
    report, local = tmp_path / "hub_report", tmp_path / "local_report"
    common = ["--data", str(tiny_dataset), "--size", "32", "--no-cache"]
    r = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "x.pt"), str(tmp_path / "f.pt"), ",".join(specs),
                        "knn", "--model", specs[0], "--model", specs[1], *common, "--out", str(report)],
                       capture_output=True, text=True, timeout=300, env=_offline(cache))
    assert r.returncode == 0, r.stderr
    got = torch.load(tmp_path / "f.pt")
    assert got[specs[0] + " name"] == "headcam-resnet18" and got[specs[1] + " name"] == "dino_say_vitmini"
    assert torch.equal(got[specs[0]], _features(load_model(str(ckpt)), x))
    assert torch.equal(got[specs[1]], _features(load_model(str(zoo)), x))
    assert eval_main(["knn", "--model", f"local-dir:{export}", "--model", str(zoo), *common, "--out", str(local)]) == 0
    hub_rows, local_rows = (json.loads((d / "report.json").read_text())["results"] for d in (report, local))
    assert [(r["top1"], r["top5"]) for r in hub_rows] == [(r["top1"], r["top5"]) for r in local_rows]
    assert [r["model"] for r in hub_rows] == ["headcam-resnet18", "dino_say_vitmini"]


NO_TORCH = """
import sys
from headcam.eval.cli import main
code = main(sys.argv[1:])
print([m for m in ("torch", "timm") if m in sys.modules])
sys.exit(code)
"""


@pytest.mark.parametrize(("spec", "message"), [
    ("hf-hub:someone/not-cached", "config.json of someone/not-cached is not in the Hugging Face cache"),
    ("hf://eminorhan/zoo/dino_say_vitb14.pth", "dino_say_vitb14.pth of eminorhan/zoo is not in the Hugging Face"),
])
def test_offline_and_not_cached_is_one_line_exit_2(tmp_path, tiny_dataset, spec, message):
    cache = tmp_path / "hub"
    cache.mkdir()
    argv = ["knn", "--model", "hog", "--model", spec, "--data", str(tiny_dataset), "--out", str(tmp_path / "r")]
    r = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], capture_output=True, text=True, timeout=300,
                       env=_offline(cache))
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and message in err and "HF_HUB_OFFLINE is set" in err, err
    assert r.stdout.strip() == "[]"  # told before torch was imported or any model evaluated
    assert not list(cache.iterdir()) and not (tmp_path / "r").exists()  # nothing written


@pytest.mark.parametrize(("spec", "message"), [
    ("local-dir:{tmp}/nowhere", "not a folder"),
    ("local-dir:{tmp}", "no config.json or model.safetensors"),
    ("hf-hub:just-a-name", "write it as hf-hub:ORG/NAME[@REVISION]"),
    ("hf://org/repo", "write it as hf://ORG/REPO[@REVISION]/FILE"),
])
def test_malformed_hub_and_folder_specs_are_one_line_exit_2(tmp_path, capsys, spec, message):
    code = eval_main(["knn", "--model", spec.format(tmp=tmp_path), "--data", str(tmp_path), "--out",
                      str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
