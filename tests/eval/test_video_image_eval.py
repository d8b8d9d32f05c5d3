"""Video models evaluated on images, as eminorhan/mae_st does it (``engine_finetune_on_image.py``: the image
repeated over all ``num_frames`` frames): ``headcam-eval linear|knn --model VIDEO_CKPT`` on an image dataset."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from headcam.console import UsageError
from headcam.eval.cli import main
from headcam.eval.features import split_features
from headcam.eval.models import load_model
from headcam.pipelines.loader import LoaderConfig, build_loader
from headcam.shards.dataset import open_dataset
from headcam.train.backbones import build_backbone

FRAMES = 4  # a clip length other than the default 16: the eval trunk must take it from the file's tensors


def _video_models_file(path) -> None:
    """A fine-tuned ``vit_*`` file of eminorhan/video-models' layout (a 5-way head the trunk drops)."""
    torch.manual_seed(0)
    net, dim = build_backbone("vit_tiny_patch16_st", num_frames=FRAMES)
    model = {**net.state_dict(), "head.weight": torch.randn(5, dim) * 0.02, "head.bias": torch.zeros(5)}
    torch.save({"model": model, "optimizer": {}, "epoch": 9, "scaler": {},
                "args": argparse.Namespace(model="vit_tiny_patch16", num_frames=FRAMES)}, path)


def test_video_checkpoint_features_of_images_are_the_repeated_clip_features(tiny_dataset, tmp_path):
    path = tmp_path / "s_ssv2-50shot.pth"
    _video_models_file(path)
    model = load_model(str(path))
    assert model.source["num_frames"] == FRAMES and model.trunk.num_frames == FRAMES
    feats = split_features(model, open_dataset(tiny_dataset), "val", size=32, batch_size=4)
    loader = build_loader(open_dataset(tiny_dataset), "val", LoaderConfig.for_eval(size=32, batch_size=64))
    views = torch.cat([b.views[0] for b in loader])
    with torch.no_grad():
        want = model.trunk(views.unsqueeze(2).repeat((1, 1, FRAMES, 1, 1)))
    assert feats.feats.shape == (9, 192)
    np.testing.assert_allclose(feats.feats, want.numpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(feats.feats[0] - feats.feats[1]).max() > 1e-2


def test_linear_and_knn_take_a_video_checkpoint(tiny_dataset, tmp_path, capsys):
    path = tmp_path / "s_ssv2-50shot.pth"
    _video_models_file(path)
    common = ["--data", str(tiny_dataset), "--size", "32", "--batch-size", "16", "--cache-dir", str(tmp_path / "c")]
    for command, extra in (("linear", ["--protocol", "splits", "--probe", "logreg"]), ("knn", [])):
        out = tmp_path / command
        code = main([command, "--model", str(path), "--model", "random:vit_tiny_patch16_st", *common, *extra,
                     "--out", str(out)])
        stdout = capsys.readouterr().out
        assert code == 0, stdout
        rows = {r["model"]: r for r in json.loads((out / "report.json").read_text())["results"]}
        assert set(rows) == {"s_ssv2-50shot", "random:vit_tiny_patch16_st"}, rows
        for r in rows.values():
            assert r["feat_dim"] == 192 and r["n_train"] == 27 and r["n_test"] == 9
            assert r["top1"] > 40, rows  # three visually different videos; chance is 33 %


def test_probe_feature_choices_of_image_vits_are_refused_for_video_vits(tmp_path):
    path = tmp_path / "s_ssv2-50shot.pth"
    _video_models_file(path)
    with pytest.raises(UsageError, match="--vit-features last4: a video ViT .* final-norm CLS token only"):
        load_model(str(path), vit_features="last4")
