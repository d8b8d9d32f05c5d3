"""Checkpoint import: baby-vision files recognised from keys/shapes, headcam files, bad input, BN untouched."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision

from headcam.console import UsageError
from headcam.eval.features import extract
from headcam.eval.models import load_model
from headcam.train import checkpoint
from headcam.train.backbones import build_backbone


def baby_vision_checkpoint(path, arch: str, n_out: int) -> None:
    """A file laid out like the published baby-vision ones: DataParallel keys, new readout layer."""
    model = getattr(torchvision.models, arch)(weights=None)
    if arch == "mobilenet_v2":
        model.classifier = torch.nn.Linear(1280, n_out)
    else:
        model.fc = torch.nn.Linear(model.fc.in_features, n_out)
    torch.save({"epoch": 16, "model_state_dict": torch.nn.DataParallel(model).state_dict(),
                "optimizer_state_dict": {}}, path)
    return model


@pytest.mark.parametrize(("arch", "n_out", "dim", "size"), [("mobilenet_v2", 1718, 1280, 64),
                                                             ("resnext50_32x4d", 2765, 2048, 32)])
def test_baby_vision_checkpoint_is_recognised_and_gives_features(tmp_path, arch, n_out, dim, size):
    path = tmp_path / f"TC-Y-{arch}.tar"
    original = baby_vision_checkpoint(path, arch, n_out)
    assert all(k.startswith("module.") for k in torch.load(path, weights_only=True)["model_state_dict"])
    model = load_model(str(path))
    assert model.arch == arch and model.feat_dim == dim and model.source["n_out"] == n_out
    # the weights really are the file's: the trunk reproduces the original network's penultimate layer
    original.eval()
    if arch == "mobilenet_v2":
        original.classifier = torch.nn.Identity()
    else:
        original.fc = torch.nn.Identity()
    x = torch.randn(2, 3, size, size)
    batch = SimpleNamespace(views=[x], label=torch.tensor([0, 1]), keys=["a", "b"])
    keys, labels, feats = extract(model, [batch])
    assert feats.shape == (2, dim) and keys == ["a", "b"]
    with torch.no_grad():
        np.testing.assert_allclose(feats, original(x).numpy(), rtol=1e-4, atol=1e-5)


def test_headcam_checkpoint_and_identity(tmp_path):
    trunk, dim = build_backbone("resnet18", small_stem=True)
    ckpt = {"format": "headcam-checkpoint", "version": 1, "arch": "resnet18", "small_stem": True, "feat_dim": dim,
            "backbone": trunk.state_dict(), "method": "simclr", "config": {}, "step": 3, "n_classes": None,
            "head": None, "rng": checkpoint.rng_state()}
    torch.save(ckpt, tmp_path / "a.pt")
    model = load_model(str(tmp_path / "a.pt"), name="mine")
    assert model.name == "mine" and model.feat_dim == 512 and model.source["method"] == "simclr"
    for k, v in trunk.state_dict().items():
        assert torch.equal(model.trunk.state_dict()[k], v)
    # identity follows the file content, not its name; random nets follow the seed
    shutil.copy(tmp_path / "a.pt", tmp_path / "b.pt")
    assert load_model(str(tmp_path / "b.pt")).identity == model.identity
    assert load_model("random:resnet18", seed=1).identity != load_model("random:resnet18", seed=2).identity


def test_unknown_architecture_is_one_clear_line(tmp_path):
    torch.save({"model_state_dict": {"module.encoder.weight": torch.zeros(4, 4)}}, tmp_path / "x.pt")
    with pytest.raises(UsageError, match=r"unknown architecture.*supported: resnet18.*found 1 trunk tensors"):
        load_model(str(tmp_path / "x.pt"))
    torch.save({"format": "headcam-checkpoint", "version": 1, "arch": "vit_b_16", "backbone": {}}, tmp_path / "v.pt")
    with pytest.raises(UsageError, match=r"unknown architecture 'vit_b_16'.*supported"):
        load_model(str(tmp_path / "v.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="cannot read checkpoint"):
        load_model(str(tmp_path / "junk.pt"))
    with pytest.raises(UsageError, match="random:ARCH"):
        load_model(str(tmp_path / "missing.pt"))
    with pytest.raises(UsageError, match="supported"):
        load_model("random:alexnet")


def test_feature_extraction_leaves_batchnorm_statistics_unchanged():
    model = load_model("random:resnet18")
    model.trunk.train()  # even a trunk handed over in train mode must be switched to eval
    before = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    batches = [SimpleNamespace(views=[torch.randn(4, 3, 32, 32) * 3 + 1], label=torch.zeros(4, dtype=torch.long),
                               keys=[f"k{i}{j}" for j in range(4)]) for i in range(3)]
    _, _, feats = extract(model, batches)
    assert feats.shape == (12, 512)
    assert not model.trunk.training
    for k, v in model.trunk.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed during extraction"
    # and the features are deterministic (eval mode: no batch statistics involved)
    _, _, again = extract(model, batches[:1])
    np.testing.assert_allclose(again, feats[:4], rtol=1e-5, atol=1e-6)


def test_checkpoint_from_a_run_directory_is_named_after_the_run(tmp_path):
    trunk, dim = build_backbone("resnet18")
    (tmp_path / "tc_run").mkdir()
    torch.save({"format": "headcam-checkpoint", "version": 1, "arch": "resnet18", "small_stem": False,
                "feat_dim": dim, "backbone": trunk.state_dict(), "method": "tc"}, tmp_path / "tc_run" / "checkpoint.pt")
    assert load_model(str(tmp_path / "tc_run" / "checkpoint.pt")).name == "tc_run"
    torch.save({"format": "headcam-checkpoint", "version": 7, "arch": "resnet18"}, tmp_path / "v7.pt")
    with pytest.raises(UsageError, match="newer headcam \\(checkpoint version 7\\).*upgrade headcam"):
        load_model(str(tmp_path / "v7.pt"))


def test_files_that_need_full_unpickling_are_refused_not_silently_loaded(tmp_path):
    """The loader used to retry with weights_only=False; a pickled object (here numpy's RNG state, which
    headcam never writes) must be a clear refusal instead, through the same reader the trainer uses."""
    trunk, dim = build_backbone("resnet18")
    torch.save({"format": "headcam-checkpoint", "version": 1, "arch": "resnet18", "small_stem": False,
                "feat_dim": dim, "backbone": trunk.state_dict(), "rng": np.random.get_state()}, tmp_path / "p.pt")
    with pytest.raises(UsageError, match=r"refused by safe loading \(weights_only=True\)") as e:
        load_model(str(tmp_path / "p.pt"))
    assert "\n" not in str(e.value)
    with pytest.raises(checkpoint.CheckpointError, match="refused by safe loading"):
        checkpoint.load(tmp_path / "p.pt")


@pytest.mark.parametrize(("method", "config", "want"), [("mae", {}, "mae"), ("dino", {}, "dino"),
                                                        ("simclr", {"pos_interp": "mae"}, "mae")])
def test_a_vit_checkpoint_resamples_positions_the_way_its_run_did(tmp_path, method, config, want):
    """MAE-trained trunks resample MAE's way at other sides, DINO-trained ones DINO's way, unless the run said."""
    trunk, dim = build_backbone("vit_small_patch16")
    ckpt = {"format": "headcam-checkpoint", "version": 1, "arch": "vit_small_patch16", "small_stem": False,
            "feat_dim": dim, "backbone": trunk.state_dict(), "method": method, "config": config, "step": 1,
            "n_classes": None, "head": None}
    torch.save(ckpt, tmp_path / "vit.pt")
    model = load_model(str(tmp_path / "vit.pt"))
    assert model.trunk.pos_interp == want and model.source["pos_interp"] == want
