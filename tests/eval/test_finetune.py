"""Few-shot fine-tuning: a seeded (balanced) subset, the whole network tuned in train mode and scored in eval
mode, a report that ``compare`` puts beside a linear one, and one-line user errors."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from headcam.console import UsageError
from headcam.eval.cli import main
from headcam.eval.decode import DecodeOptions
from headcam.eval.finetune import FinetuneOptions, few_shot_subset, finetune
from headcam.eval.models import load_model
from headcam.eval.protocols import resolve_protocol
from headcam.shards.dataset import open_dataset, write_table
from headcam.shards.schema import MANIFEST

NAMES = ["city", "nasa", "tree"]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_subset_is_seeded_and_balanced(tiny_dataset):
    train = resolve_protocol("splits", open_dataset(tiny_dataset)).train  # 27 samples, 9 per class
    first = few_shot_subset(train, 0.34, balanced=True, seed=0, class_names=NAMES)
    assert np.bincount(first.labels).tolist() == [3, 3, 3]
    assert set(first.keys) <= set(train.keys)
    assert few_shot_subset(train, 0.34, balanced=True, seed=0, class_names=NAMES).keys == first.keys
    assert few_shot_subset(train, 0.34, balanced=True, seed=1, class_names=NAMES).keys != first.keys
    loose = few_shot_subset(train, 0.5, balanced=False, seed=0, class_names=NAMES)
    assert len(loose.keys) == 14 and loose.keys != few_shot_subset(train, 0.5, balanced=False, seed=3,
                                                                   class_names=NAMES).keys
    # 'tree' keeps 2 samples: a balanced half of 20 samples needs 3 per class
    keep = [i for i, lab in enumerate(train.labels) if lab != 2 or i % 9 < 2]
    short = dataclasses.replace(train, keys=[train.keys[i] for i in keep], labels=train.labels[keep])
    assert np.bincount(short.labels).tolist() == [9, 9, 2]
    with pytest.raises(UsageError, match="needs 3 training samples per class, but class 'tree' has 2"):
        few_shot_subset(short, 0.5, balanced=True, seed=0, class_names=NAMES)


def test_headcam_recipe_follows_spec_10():
    """SPEC §10: Adam 5e-4 for CNNs with the last 2 epochs at x0.2, 1e-4 for ViTs, constant; --lr and
    --lr-drop-epochs override them."""
    cnn = FinetuneOptions().resolve(load_model("random:resnet18"))
    vit = FinetuneOptions().resolve(load_model("random:vit_mini_patch4"))
    assert [cnn.lr_at(e, 256) for e in range(25)] == [5e-4] * 23 + [pytest.approx(1e-4)] * 2
    assert [vit.lr_at(e + 0.5, 256) for e in range(25)] == [1e-4] * 25
    mine = FinetuneOptions(epochs=3, lr=1e-3, lr_drop_epochs=1).resolve(load_model("random:resnet18"))
    assert [mine.lr_at(e, 8) for e in range(3)] == [1e-3, 1e-3, pytest.approx(2e-4)]


def test_whole_network_tuned_in_train_mode_and_scored_in_eval_mode(tiny_dataset, tmp_path):
    ds = open_dataset(tiny_dataset)
    # Toybox-style rows spread over both shard splits: the key filter must read every split that holds them
    iid = ["train" if i % 3 else "test" for i in range(ds.manifest.num_rows)]
    shutil.copytree(tiny_dataset, tmp_path / "tb")
    write_table(tmp_path / "tb" / MANIFEST, ds.manifest.append_column("split_iid", pa.array(iid)))
    plan = resolve_protocol("toybox-iid", open_dataset(tmp_path / "tb"))
    assert plan.train.splits == ["train", "val"]
    subset = few_shot_subset(plan.train, 0.5, balanced=True, seed=0, class_names=plan.class_names)
    split_of = dict(zip(ds.manifest["key"].to_pylist(), ds.manifest["split"].to_pylist(), strict=True))
    assert {split_of[k] for k in subset.keys} == {"train", "val"}  # the filter reads both splits' shards
    tars = sorted(tmp_path.rglob("*.tar"))

    model = load_model("random:resnet18")
    before = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    seen: list[tuple[bool, bool]] = []  # (BatchNorm in train mode, gradients on) at every BN forward
    for m in model.trunk.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.register_forward_hook(lambda mod, inp, out: seen.append((mod.training, torch.is_grad_enabled())))
    opts = DecodeOptions(size=32, batch_size=16, epochs=3, seed=0)
    preset = FinetuneOptions(frac=0.5, balanced=True, epochs=2, batch_size=8).resolve(model)
    results = finetune(model, plan, subset, opts, preset, then_linear=True)
    assert sorted(tmp_path.rglob("*.tar")) == tars  # the subset is read by key, never copied

    after = model.trunk.state_dict()
    for name in ("conv1.weight", "layer4.1.conv2.weight", "bn1.running_mean"):
        assert not torch.equal(before[name], after[name]), f"{name} was not tuned"
    tuning = [training for training, grad in seen if grad]
    scoring = [training for training, grad in seen if not grad]
    assert tuning and all(tuning), "BatchNorm must be in train mode while tuning"
    assert scoring and not any(scoring), "BatchNorm must be in eval mode while scoring"

    ft_row, lin_row = (r.row for r in results)
    assert ft_row["probe"] == "finetune50%" and lin_row["probe"] == "finetune50%+adam"
    assert ft_row["n_train"] == len(subset.keys) == 12 and lin_row["n_train"] == len(plan.train.keys)
    assert ft_row["n_test"] == lin_row["n_test"] == len(plan.test.keys) and ft_row["missing"] == 0
    assert ft_row["feat_dim"] == 512 and len(ft_row["train_loss"]) == 2 and np.isfinite(ft_row["top1"])
    assert set(lin_row) <= set(ft_row)  # the linear row's fields, and the tuning's own


def test_cli_report_compares_with_linear(tiny_dataset, tmp_path, capsys):
    common = ["--model", "random:resnet18", "--data", str(tiny_dataset), "--size", "32", "--batch-size", "16",
              "--no-cache"]
    code, stdout, _ = run(["finetune", *common, "--frac", "0.34", "--balanced", "--epochs", "2",
                           "--tune-batch-size", "8", "--then-linear", "--probe", "logreg",
                           "--out", str(tmp_path / "ft")], capsys)
    assert code == 0, stdout
    assert "finetune splits" in stdout and "finetune34%+logreg" in stdout
    report = json.loads((tmp_path / "ft" / "report.json").read_text())
    assert report["command"] == "finetune" and report["probe_settings"]["subset"]["per_class"] == \
        {"city": 3, "nasa": 3, "tree": 3}
    assert [r["n_train"] for r in report["results"]] == [9, 27]
    assert not list((tmp_path / "ft").rglob("*.tar")) and not list((tmp_path / "ft").glob(".finetune-subset-*"))
    for name in report["plots"]:
        with Image.open(tmp_path / "ft" / name) as im:
            im.verify()
    assert "| random:resnet18 | splits | finetune34% |" in (tmp_path / "ft" / "report.md").read_text()

    code, _, _ = run(["linear", *common, "--probe", "logreg", "--out", str(tmp_path / "lin")], capsys)
    assert code == 0
    linear = json.loads((tmp_path / "lin" / "report.json").read_text())["results"][0]
    assert set(linear) <= set(report["results"][0])
    code, stdout, _ = run(["compare", str(tmp_path / "lin"), str(tmp_path / "ft")], capsys)
    assert code == 0 and "| logreg |" in stdout and "| finetune34% |" in stdout and "finetune34%+logreg" in stdout


def test_user_mistakes_are_one_line(tiny_dataset, tmp_path, capsys):
    base = ["finetune", "--data", str(tiny_dataset), "--out", str(tmp_path / "o"), "--size", "32"]
    for argv, msg in [
        ([*base, "--model", "random:resnet18", "--frac", "0"], "--frac 0.0: the fraction of training samples"),
        ([*base, "--model", "random:resnet18", "--frac", "1.5"], "must be in (0, 1]"),
        ([*base, "--model", "hog"], "--model hog: a hand-made baseline has no weights to fine-tune"),
    ]:
        code, _, err = run(argv, capsys)
        assert code == 2 and msg in err and err.count("\n") == 1, err
    # a dataset without labels: nothing to tune on
    shutil.copytree(tiny_dataset, tmp_path / "unlabelled")
    ds = open_dataset(tmp_path / "unlabelled")
    table = ds.manifest.set_column(ds.manifest.schema.get_field_index("label"), "label",
                                   pa.array([-1] * ds.manifest.num_rows, type=pa.int64()))
    write_table(tmp_path / "unlabelled" / MANIFEST, table)
    code, _, err = run(["finetune", "--model", "random:resnet18", "--data", str(tmp_path / "unlabelled"),
                        "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "no labelled training samples" in err and err.count("\n") == 1, err
