"""The silicon-menagerie zoo loads unchanged: files built in exactly the published DINO and MAE layouts
from randomly initialised networks, recognised from their keys with safe loading, give the original
network's CLS (or pooled) features."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision

from headcam.console import UsageError
from headcam.eval.features import extract
from headcam.eval.models import load_model
from headcam.train import zoo
from headcam.train.backbones import build_vit, resample_pos_embed


def _dino_head_keys(dim: int) -> dict[str, torch.Tensor]:
    """A DINO head's parameter names (3-layer MLP, weight-normed last layer), small widths."""
    return {"head.mlp.0.weight": torch.randn(32, dim), "head.mlp.0.bias": torch.zeros(32),
            "head.mlp.2.weight": torch.randn(16, 32), "head.last_layer.weight_g": torch.ones(64, 1),
            "head.last_layer.weight_v": torch.randn(64, 16)}


def _dino_file(path, network: torch.nn.Module, prefix: str) -> None:
    teacher = {f"{prefix}{k}": v for k, v in network.state_dict().items()}
    teacher.update({f"{prefix.replace('backbone.', '')}{k}": v for k, v in _dino_head_keys(8).items()})
    student = {k: v + 1 for k, v in teacher.items() if v.is_floating_point()}  # not the weights to use
    args = argparse.Namespace(arch="vit_base", patch_size=14, out_dim=65536, lr=1e-4)
    torch.save({"student": student, "teacher": teacher, "optimizer": {"state": {}, "param_groups": []},
                "it": 1200, "args": args, "dino_loss": {"center": torch.zeros(1, 64)}}, path)


def _mae_file(path, vit: torch.nn.Module) -> None:
    model = dict(vit.state_dict())
    model.update({"mask_token": torch.zeros(1, 1, 512), "decoder_embed.weight": torch.randn(512, 384),
                  "decoder_pos_embed": torch.zeros(1, 197, 512), "decoder_norm.weight": torch.ones(512),
                  "decoder_pred.weight": torch.randn(768, 512)})
    torch.save({"model": model, "optimizer": {}, "it": 7, "args": argparse.Namespace(model="mae_vit_small"),
                "scaler": {"scale": 65536.0}}, path)


def _features(model, x: torch.Tensor) -> np.ndarray:
    _, _, feats = extract(model, [SimpleNamespace(views=[x], label=torch.zeros(len(x), dtype=torch.long),
                                                  keys=[str(i) for i in range(len(x))])])
    return feats


@pytest.mark.parametrize(("arch", "layout", "size"), [("vit_base_patch14", "dino", 56),
                                                       ("vit_small_patch16", "mae", 64)])
def test_vit_zoo_files_give_the_original_cls_features(tmp_path, arch, layout, size):
    """At a side other than 224 the original resamples its positions the way of its code (MAE's evaluation:
    interpolate_pos_embed; DINO's: interpolate_pos_encoding), and so must the loaded trunk."""
    torch.manual_seed(0)
    original = build_vit(arch, pos_interp=layout).eval()
    path = tmp_path / f"{layout}_say_{arch}.pth"
    if layout == "dino":
        _dino_file(path, original, "module.backbone.")
    else:
        _mae_file(path, original)
    model = load_model(str(path))
    assert model.arch == arch and model.source["format"] == layout and model.feat_dim == original.embed_dim
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        cls = original(x)  # the trunk's output: CLS after the final norm
        tokens = original.forward_features(x)
    np.testing.assert_allclose(cls.numpy(), tokens[:, 0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_features(model, x), cls.numpy(), rtol=1e-4, atol=1e-5)


def test_resnext_dino_teacher_with_module_prefix(tmp_path):
    net = torchvision.models.resnext50_32x4d(weights=None)
    net.fc = torch.nn.Identity()
    net.eval()
    path = tmp_path / "dino_y_resnext50.pth"
    _dino_file(path, net, "module.")
    model = load_model(str(path))
    assert model.arch == "resnext50_32x4d" and model.source["format"] == "dino" and model.source["step"] == 1200
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(_features(model, x), net(x).numpy(), rtol=1e-4, atol=1e-5)


def test_a_vit_trained_at_another_resolution_has_its_position_grid_resampled(tmp_path):
    small = build_vit("vit_small_patch16", img_size=96)  # a 6x6 grid instead of 14x14
    path = tmp_path / "mae_96.pth"
    _mae_file(path, small)
    model = load_model(str(path))
    assert model.trunk.pos_embed.shape == (1, 1 + 14 * 14, 384)
    assert _features(model, torch.randn(1, 3, 96, 96)).shape == (1, 384)


@pytest.mark.parametrize("layout", ["dino", "mae"])
def test_position_grids_are_resampled_the_way_of_the_files_reference(tmp_path, layout):
    # a 6x6 grid (96 px) brought to the 14x14 the trunk is built with: MAE's interpolate_pos_embed for MAE
    # files, DINO's interpolate_pos_encoding for DINO files (both transcribed in tests/train/test_references.py)
    small = build_vit("vit_small_patch16", img_size=96)
    with torch.no_grad():
        small.pos_embed.normal_()
    path = tmp_path / f"{layout}_96.pth"
    if layout == "dino":
        _dino_file(path, small, "module.backbone.")
    else:
        _mae_file(path, small)
    found = zoo.recognise(torch.load(path, weights_only=False), str(path))
    assert found.source["pos_interp"] == layout
    want = resample_pos_embed(small.pos_embed.detach(), (14, 14), layout)
    assert torch.equal(found.state["pos_embed"], want)
    other = resample_pos_embed(small.pos_embed.detach(), (14, 14), "mae" if layout == "dino" else "dino")
    assert not torch.allclose(found.state["pos_embed"], other, atol=1e-3)


def test_other_pickled_classes_are_still_refused(tmp_path):
    torch.save({"teacher": {}, "args": SimpleNamespace(arch="vit")}, tmp_path / "odd.pth")
    with pytest.raises(UsageError, match="refused by safe loading.*SimpleNamespace"):
        load_model(str(tmp_path / "odd.pth"))


def test_vit_probe_features_last_blocks_and_avgpool(tmp_path):
    torch.manual_seed(0)
    original = build_vit("vit_small_patch16", pos_interp="mae").eval()  # an MAE file resamples MAE's way
    path = tmp_path / "mae.pth"
    _mae_file(path, original)
    plain, deep = load_model(str(path)), load_model(str(path), vit_features="last4+avgpool")
    assert deep.feat_dim == 5 * 384 and deep.identity != plain.identity  # separate cache entries
    x = torch.randn(2, 3, 32, 32)
    feats = _features(deep, x)
    with torch.no_grad():
        cls = original(x).numpy()
    np.testing.assert_allclose(feats[:, 3 * 384:4 * 384], cls, rtol=1e-4, atol=1e-5)  # last block's CLS
    assert load_model("random:resnet18", vit_features="last2").feat_dim == 512  # CNNs ignore it
    with pytest.raises(UsageError, match="use cls, lastN or lastN\\+avgpool"):
        load_model("random:resnet18", vit_features="last0")
