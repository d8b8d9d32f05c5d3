"""``--protocol`` presets on tiny datasets in each shipped layout, ingested through the real ``headcam-ingest``.

The shuffled protocols (labeled-s, konkle-objects) are checked against a transcription of
eminorhan/dino ``eval_linear.py:85-96`` run after ``np.random.seed(seed)``, over the sample order
torchvision's ImageFolder gives the files on disk; the split protocols against the folders written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))  # the layout builders of the ingest tests
from fixtures_layouts import make_class_folders, make_core50, make_places365  # noqa: E402

from headcam.console import UsageError  # noqa: E402
from headcam.eval.cli import main as eval_main  # noqa: E402
from headcam.eval.protocols import PRESETS, describe, resolve_protocol, shuffled_split  # noqa: E402
from headcam.ingest.cli import main as ingest_main  # noqa: E402
from headcam.shards.dataset import open_dataset  # noqa: E402

CLASSES = ["ball", "car", "cat"]


def reference_split(num_train: int, seed: int, subsample: bool) -> tuple[list[int], list[int]]:
    """eminorhan/dino ``eval_linear.py:88-96`` (baby-vision ``linear_decoding.py:72-80``), with the seed set."""
    np.random.seed(seed)
    indices = list(range(num_train))
    np.random.shuffle(indices)
    if subsample:
        num_data = int(0.1 * num_train)
        return indices[:(num_data // 2)], indices[(num_data // 2):num_data]
    split = int(np.floor(0.5 * num_train))
    return indices[:split], indices[split:]


def ingest(fmt: str, src: Path, out: Path) -> Path:
    assert ingest_main(["images", "--format", fmt, str(src), "--out", str(out), "--workers", "1"]) in (0, 3)
    return out


def run_eval(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = eval_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def one_folder(tmp_path_factory) -> tuple[Path, dict]:
    """Labeled-S / Konkle layout: one folder of class folders, 80 images each, ingested with --format folder."""
    root = tmp_path_factory.mktemp("one_folder")
    written = make_class_folders(root / "src", CLASSES, 80)
    return ingest("folder", root / "src", root / "ds"), written["train"]


@pytest.mark.parametrize("n", [1, 7, 100, 1001])
@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("subsample", [False, True])
def test_shuffled_split_is_the_reference_split_under_the_seed(n, seed, subsample):
    train, test = shuffled_split(n, seed, subsample)
    ref_train, ref_test = reference_split(n, seed, subsample)
    assert train.tolist() == ref_train and test.tolist() == ref_test
    assert not set(train.tolist()) & set(test.tolist())
    if subsample:
        assert len(train) == int(0.1 * n) // 2 and len(train) + len(test) == int(0.1 * n)
    else:
        assert len(train) == n // 2 and len(test) == n - n // 2


@pytest.mark.parametrize("protocol", ["labeled-s", "konkle-objects"])
def test_shuffled_protocols_split_imagefolder_order_as_the_script(one_folder, protocol):
    out, written = one_folder
    ds = open_dataset(out)
    # ImageFolder's order, from the files on disk: class folders sorted, then file names sorted
    on_disk = [str(p) for name in sorted(written) for p in sorted(written[name])]
    key_of = dict(zip(ds.manifest.column("source").to_pylist(), ds.manifest.column("key").to_pylist(), strict=True))
    preset = PRESETS[protocol]
    plans = {seed: resolve_protocol(protocol, ds, seed=seed) for seed in (0, 0, 1)}
    plan = plans[0]
    ref_train, ref_test = reference_split(len(on_disk), 0, preset.subsample)
    assert set(plan.train.keys) == {key_of[on_disk[i]] for i in ref_train}
    assert set(plan.test.keys) == {key_of[on_disk[i]] for i in ref_test}
    assert not set(plan.train.keys) & set(plan.test.keys)
    n = len(on_disk)
    assert (len(plan.train.keys), len(plan.test.keys)) == ((12, 12) if preset.subsample else (n // 2, n - n // 2))
    assert plan.class_names == CLASSES
    labels = dict(zip(ds.manifest.column("key").to_pylist(), ds.manifest.column("label").to_pylist(), strict=True))
    assert plan.train.labels.tolist() == [labels[k] for k in plan.train.keys]
    assert resolve_protocol(protocol, ds, seed=0).train.keys == plan.train.keys  # determined by the seed
    assert set(plans[1].train.keys) != set(plan.train.keys)
    assert plan.notes["seed"] == 0 and plan.notes["pool"] == n
    line = describe(plan)
    assert f"protocol {protocol}" in line and "(seed 0)" in line
    assert f"the reference has {preset.n_classes} classes" in line


def test_shuffled_protocols_take_no_second_dataset_or_split(one_folder):
    ds = open_dataset(one_folder[0])
    with pytest.raises(UsageError, match="drop --test-data"):
        resolve_protocol("labeled-s", ds, ds)
    with pytest.raises(UsageError, match="drop --train-split / --test-split"):
        resolve_protocol("konkle-objects", ds, test_split="val")
    with pytest.raises(UsageError, match="no held-out split"):  # one folder has no val/test split to score on
        resolve_protocol("ecoset", ds)


def test_konkle_objects_knn_from_the_cli(one_folder, tmp_path, capsys):
    code, out, _ = run_eval(capsys, "knn", "--model", "pixels", "--data", str(one_folder[0]), "--protocol",
                            "konkle-objects", "--size", "32", "--no-cache", "--seed", "5", "--out", str(tmp_path / "r"))
    assert code == 0
    assert "protocol konkle-objects: one folder shuffled" in out and "(seed 5): 120 train, 120 test, 3 classes" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    settings = report["protocol_settings"]
    assert settings["seed"] == 5 and settings["reference_classes"] == 240 and settings["n_train"] == 120
    row = report["results"][0]
    assert (row["n_train"], row["n_test"]) == (120, 120) and row["top1"] > 90


def test_ecoset_and_imagenet_score_on_val(tmp_path):
    """ecoset ships train/ val/ test/ and is scored on val; ImageNet's val may be a dataset of its own."""
    make_class_folders(tmp_path / "eco", CLASSES, {"train": 4, "val": 3, "test": 2}, splits=("train", "val", "test"))
    ds = open_dataset(ingest("folder", tmp_path / "eco", tmp_path / "eco_ds"))
    plan = resolve_protocol("ecoset", ds)
    assert plan.train.splits == ["train"] and plan.test.splits == ["val"]
    assert (len(plan.train.keys), len(plan.test.keys)) == (12, 9)
    make_class_folders(tmp_path / "inval", ["car", "cat"], 2)  # a val folder holding two of the classes
    val = open_dataset(ingest("folder", tmp_path / "inval", tmp_path / "inval_ds"))
    plan = resolve_protocol("imagenet", ds, val)
    assert plan.class_names == CLASSES and sorted(set(plan.test.labels.tolist())) == [1, 2]
    assert plan.notes["test"].endswith("split train") and plan.notes["reference_classes"] == 1000


def test_core50_knn_from_the_cli(tmp_path, capsys):
    make_core50(tmp_path / "src", sessions=(1, 2, 4, 3, 10), objects=(1, 2, 6), frames=3)
    ds = ingest("core50", tmp_path / "src", tmp_path / "ds")
    plan = resolve_protocol("core50", open_dataset(ds))
    assert plan.test.splits == ["test"] and len(plan.class_names) == 50
    assert (len(plan.train.keys), len(plan.test.keys)) == (27, 18)
    code, out, _ = run_eval(capsys, "knn", "--model", "pixels", "--data", str(ds), "--protocol", "core50",
                            "--size", "32", "--no-cache", "--out", str(tmp_path / "r"))
    assert code == 0 and "protocol core50: train split vs val (else test) split" in out
    assert "27 train, 18 test, 50 classes" in out and "the reference has" not in out
    row = json.loads((tmp_path / "r" / "report.json").read_text())["results"][0]
    assert row["top1"] > 90


def test_places365_linear_from_the_cli(tmp_path, capsys):
    make_places365(tmp_path / "src", n_train=6, n_val=3)
    ds = ingest("places365", tmp_path / "src", tmp_path / "ds")
    code, out, _ = run_eval(capsys, "linear", "--model", "pixels", "--probe", "logreg", "--data", str(ds),
                            "--protocol", "places365", "--size", "32", "--no-cache", "--out", str(tmp_path / "r"))
    assert code == 0 and "18 train, 9 test, 3 classes; the reference has 365 classes" in out
    row = json.loads((tmp_path / "r" / "report.json").read_text())["results"][0]
    assert row["top1"] > 90
