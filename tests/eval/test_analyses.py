"""Analyses (CSI, top-activating units, attention maps) and a corrupt image in an evaluation split."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from headcam.eval.analyses import attention_map, class_selectivity
from headcam.eval.cli import main


def test_class_selectivity_index():
    labels = np.array([0, 0, 1, 1, 2, 2])
    feats = np.zeros((6, 3))
    feats[:, 0] = [1, 1, 0, 0, 0, 0]  # fires for class 0 only: CSI 1
    feats[:, 1] = 2.0  # same for every class: CSI 0
    feats[:, 2] = [4, 4, 2, 2, 0, 0]  # mu_max 4, others (2 + 0) / 2 = 1 -> (4 - 1) / (4 + 1)
    np.testing.assert_allclose(class_selectivity(feats, labels, 3), [1.0, 0.0, 0.6])
    # a class with no samples is left out rather than counted as a zero mean
    np.testing.assert_allclose(class_selectivity(feats, labels, 4), [1.0, 0.0, 0.6])


def test_attention_map_is_readout_weighted_sum():
    import torch

    maps = torch.arange(2 * 2 * 3, dtype=torch.float32).view(2, 2, 3)
    cam = attention_map(maps, np.array([1.0, -2.0]))
    np.testing.assert_allclose(cam, maps[0].numpy() - 2 * maps[1].numpy())


def test_analyze_writes_pngs(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "ana"
    code = main(["analyze", "--model", "random:resnet18", "--data", str(tiny_dataset), "--out", str(out),
                 "--size", "64", "--units", "4", "--per-unit", "3", "--maps", "5", "--no-cache"])
    stdout = capsys.readouterr().out
    assert code == 0 and "512 units" in stdout
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["n_units"] == 512 and len(summary["top_units"]) == 4
    assert all(len(u["keys"]) == 3 for u in summary["top_units"].values())
    assert len(summary["attention_maps"]) == 5
    for p in ["csi_hist.png", "top_units.png", "attention_maps.png", *summary["attention_maps"]]:
        with Image.open(out / p) as im:
            im.verify()
    with Image.open(out / summary["attention_maps"][0]) as im:
        assert im.size == (96, 96)
    assert main(["analyze", "--model", "hog", "--data", str(tiny_dataset), "--out", str(out)]) == 2


def with_corrupt_jpeg(src, dst):
    """A copy of the dataset whose first val sample's JPEG is replaced by garbage bytes."""
    shutil.copytree(src, dst)
    shard = sorted(dst.glob("val-*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    bad = next(m.name for m, _ in members if m.name.endswith(".jpg"))
    with tarfile.open(shard, "w") as tar:
        for m, data in members:
            data = b"\xff\xd8 not a jpeg" if m.name == bad else data
            m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    return bad.split(".")[0]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_corrupt_image_is_skipped_and_reported(tiny_dataset, tmp_path, capsys):
    bad_key = with_corrupt_jpeg(tiny_dataset, tmp_path / "ds")
    code = main(["knn", "--model", "pixels", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "r"),
                 "--size", "32", "--no-cache"])
    stdout = capsys.readouterr().out
    assert code == 3  # partial: the run finished but not every sample was used
    lines = stdout.splitlines()  # the resolved protocol, then the one-line summary
    assert len(lines) == 2 and lines[0].startswith("protocol ") and "1 sample(s) without features" in lines[1]
    row = json.loads((tmp_path / "r" / "report.json").read_text())["results"][0]
    assert row["n_test"] == 8 and row["missing"] == 1 and row["loader_stats"]["corrupt"] == 1
    assert bad_key


@pytest.mark.parametrize(("arch", "channels"), [("resnet18", 512), ("mobilenet_v2", 1280)])
def test_feature_maps_are_the_last_spatial_maps_not_the_pooled_vector(arch, channels):
    import torch

    from headcam.eval.analyses import FeatureMaps
    from headcam.eval.models import load_model

    trunk = load_model(f"random:{arch}").trunk
    hook = FeatureMaps(trunk)
    with torch.inference_mode():
        pooled = trunk(torch.randn(2, 3, 64, 64))
    hook.close()
    assert hook.maps.shape == (2, channels, 2, 2)
    torch.testing.assert_close(hook.maps.mean(dim=(2, 3)), pooled)
