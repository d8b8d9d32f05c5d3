"""End to end on the real-frame tiny dataset: features through the pipelines loader, probes, reports, cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headcam.eval.cli import main
from headcam.eval.decode import DecodeOptions, decode
from headcam.eval.models import load_model
from headcam.eval.protocols import resolve_protocol
from headcam.shards.dataset import open_dataset


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_baselines_and_random_network_beat_chance(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, _ = run(["linear", "--model", "hog", "--model", "pixels", "--model", "random:resnet18",
                           "--data", str(tiny_dataset), "--protocol", "splits", "--out", str(out), "--size", "64",
                           "--batch-size", "16", "--probe", "logreg", "--cache-dir", str(tmp_path / "cache")],
                          capsys)
    assert code == 0, stdout
    assert "report in" in stdout
    report = json.loads((out / "report.json").read_text())
    rows = {r["model"]: r for r in report["results"]}
    assert set(rows) == {"hog", "pixels", "random:resnet18"}
    for r in rows.values():
        assert r["n_train"] == 27 and r["n_test"] == 9 and r["n_classes"] == 3
        assert r["top5"] == 100.0  # 3 classes: top-5 covers all
    assert rows["hog"]["probe"] == "logreg" and rows["hog"]["feat_dim"] == 324  # 4x4 cells, 2x2 blocks, 9 bins
    assert rows["pixels"]["feat_dim"] == 16 * 16 * 3 and rows["random:resnet18"]["feat_dim"] == 512
    # three visually different videos: every readout beats chance (33 %) clearly
    assert rows["hog"]["top1"] > 60 and rows["random:resnet18"]["top1"] > 60, rows
    md = (out / "report.md").read_text()
    assert "| model | protocol | probe | top1 | top5 | n_train | n_test |" in md and "random:resnet18" in md
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["accuracy.png", "confusion_hog.png", "confusion_pixels.png", "confusion_random_resnet18.png"]
    for p in out.glob("*.png"):
        with Image.open(p) as im:
            im.verify()

    # compare: one table from two report dirs
    code, stdout, _ = run(["compare", str(out), str(out), "--out", str(tmp_path / "cmp")], capsys)
    assert code == 0 and stdout.count("random:resnet18") == 2
    assert len(json.loads((tmp_path / "cmp" / "report.json").read_text())["results"]) == 6
    with Image.open(tmp_path / "cmp" / "accuracy.png") as im:
        im.verify()


def test_feature_cache_hit_on_second_probe(tiny_dataset, tmp_path):
    ds = open_dataset(tiny_dataset)
    plan = resolve_protocol("splits", ds)
    model = load_model("random:resnet18")
    opts = DecodeOptions(size=32, batch_size=8, cache_dir=tmp_path / "cache", epochs=5)
    first = decode(model, plan, opts, "adam")
    assert first.row["features_cached"] is False
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # train and val
    second = decode(model, plan, opts, "knn")
    assert second.row["features_cached"] is True
    assert second.row["n_train"] == first.row["n_train"]
    # a different size or model is a different entry, never a stale hit
    other = decode(model, plan, DecodeOptions(size=40, batch_size=8, cache_dir=tmp_path / "cache"), "knn")
    assert other.row["features_cached"] is False
    third = decode(load_model("random:resnet18", seed=5), plan, opts, "knn")
    assert third.row["features_cached"] is False
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 6


def test_knn_command_and_bad_input(tiny_dataset, tmp_path, capsys):
    code, stdout, _ = run(["knn", "--model", "pixels", "--data", str(tiny_dataset), "--out", str(tmp_path / "k"),
                           "--size", "32", "--no-cache"], capsys)
    assert code == 0 and "knn splits" in stdout
    row = json.loads((tmp_path / "k" / "report.json").read_text())["results"][0]
    assert row["probe"] == "knn" and row["top1"] > 33.4

    code, _, err = run(["linear", "--model", "hog", "--data", str(tiny_dataset), "--protocol", "toybox-iid",
                        "--out", str(tmp_path / "t")], capsys)
    assert code == 2 and "needs the manifest column 'split_iid'" in err and err.count("\n") == 1
    code, _, err = run(["linear", "--model", "hog", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "t")],
                       capsys)
    assert code == 2 and err.count("\n") == 1
    code, _, err = run(["linear", "--model", "hog", "--data", str(tiny_dataset), "--size", "32",
                        "--out", str(tmp_path / "t"), "--no-cache"], capsys)
    assert code == 2 and "HOG needs images of at least 48 px" in err


@pytest.mark.parametrize("probe", ["adam", "logreg"])
def test_probe_flag_is_honoured(tiny_dataset, tmp_path, probe):
    ds = open_dataset(tiny_dataset)
    res = decode(load_model("pixels"), resolve_protocol("splits", ds), DecodeOptions(size=32, epochs=50), probe)
    assert res.row["probe"] == probe and np.isfinite(res.row["top1"])


def test_training_runs_add_learning_curves_to_the_report(tiny_dataset, tmp_path, capsys):
    """A real (tiny) monitored training run: its loss and kNN curves go into the linear report."""
    from headcam.train.cli import main as train

    run_dir = tmp_path / "simclr"
    assert train([str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"),
                  f"data={tiny_dataset}", f"out={run_dir}", "size=32", "batch_size=8", "steps=2", "workers=0",
                  "device=cpu", "log_every=1", f"monitor.data={tiny_dataset}", "monitor.every=1",
                  "monitor.max_bank=8", "monitor.max_query=4"]) == 0
    out = tmp_path / "report"
    code, stdout, _ = run(["linear", "--model", "pixels", "--data", str(tiny_dataset), "--out", str(out),
                           "--size", "32", "--probe", "logreg", "--no-cache", "--run", str(run_dir)], capsys)
    assert code == 0, stdout
    report = json.loads((out / "report.json").read_text())
    assert "learning_curves.png" in report["plots"] and report["runs"] == [str(run_dir)]
    with Image.open(out / "learning_curves.png") as img:
        img.load()
        assert img.width > 400 and len(np.unique(np.asarray(img.convert("L")))) > 20
    assert "![learning_curves.png](learning_curves.png)" in (out / "report.md").read_text()
    code, _, err = run(["linear", "--model", "pixels", "--data", str(tiny_dataset), "--out", str(out),
                        "--run", str(tmp_path / "nope")], capsys)
    assert code == 2 and "--run" in err and "metrics.jsonl" in err


def test_report_records_only_the_settings_its_probe_used(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "r"
    args = ["linear", "--model", "pixels", "--data", str(tiny_dataset), "--size", "32", "--no-cache"]
    assert run([*args, "--out", str(out), "--probe", "logreg"], capsys)[0] == 0
    assert json.loads((out / "report.json").read_text())["probe_settings"] == {"probe": "logreg"}
    assert run([*args, "--out", str(out), "--probe", "adam", "--epochs", "3"], capsys)[0] == 0
    settings = json.loads((out / "report.json").read_text())["probe_settings"]
    assert settings["probe"] == "adam" and settings["epochs"] == 3 and settings["lr"] == 5e-4


def test_bad_model_inputs_are_one_line_exit_2(tiny_dataset, tmp_path, capsys):
    """Whatever ``--model`` names, a file that is not a usable checkpoint is one line and exit 2, told before
    any model is evaluated; a text file used to end in a 43-line traceback (KeyError: 101)."""
    import zipfile

    import torch

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.pt").write_text("hello, this is not a checkpoint\n")
    (bad / "empty.pt").write_bytes(b"")
    with zipfile.ZipFile(bad / "other.zip", "w") as z:
        z.writestr("a.txt", "hi")
    torch.save({"teacher": {"blocks.0.weight": 1}}, bad / "odd.pt")  # a known layout holding no tensors
    torch.save({"weight": torch.zeros(3, 3)}, bad / "bare.pt")  # a state_dict of no known layout
    torch.save({"format": "headcam-checkpoint", "version": 1, "arch": "vit_small_patch16", "small_stem": False,
                "backbone": {}}, bad / "vit.pt")
    (bad / "run").mkdir()
    cases = [(bad / "notes.pt", "not a torch checkpoint file"), (bad / "empty.pt", "an empty file"),
             (bad / "run", "a directory, not a checkpoint file"), (bad / "other.zip", "a zip archive without data.pkl"),
             (bad / "odd.pt", "weights are not all tensors"), (bad / "bare.pt", "nor a published one"),
             (bad / "missing.pt", "--model " + str(bad / "missing.pt") + ": not found"),
             (bad / "vit.pt", "weights do not fit vit_small_patch16")]
    out = tmp_path / "report"
    for model, message in cases:
        code, _, err = run(["knn", "--model", "pixels", "--model", str(model), "--data", str(tiny_dataset),
                            "--size", "40", "--no-cache", "--out", str(out)], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, (model, err)
        assert err.startswith("headcam-eval: error:"), err
    # the missing file was told before the first model (pixels) was evaluated: no report was written
    assert not out.exists()


def test_help_names_the_file_headcam_train_writes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "runs/tc/checkpoint.pt" in text and "last.pt" not in text


def test_reports_record_every_setting_that_changes_the_numbers(tiny_dataset, tmp_path, capsys):
    common = ["--data", str(tiny_dataset), "--size", "32", "--batch-size", "16", "--no-cache"]
    code, stdout, _ = run(["knn", "--model", "pixels", *common, "--vit-features", "last2", "--out",
                           str(tmp_path / "k")], capsys)
    assert code == 0, stdout
    report = json.loads((tmp_path / "k" / "report.json").read_text())
    assert report["vit_features"] == "last2"
    assert report["train_splits"] == ["train"] and report["test_splits"] == ["val"]
    assert '"vit_features": "last2"' in (tmp_path / "k" / "report.md").read_text()
    # finetune: the learning rate each architecture ran with (SPEC 10), never null
    code, stdout, _ = run(["finetune", "--model", "random:resnet18", "--model", "random:vit_small_patch16", *common,
                           "--frac", "0.34", "--epochs", "3", "--tune-batch-size", "8", "--out", str(tmp_path / "ft")],
                          capsys)
    assert code == 0, stdout
    report = json.loads((tmp_path / "ft" / "report.json").read_text())
    settings = report["probe_settings"]
    assert settings["lr"] == {"random:resnet18": 5e-4, "random:vit_small_patch16": 1e-4}
    assert settings["lr_drop_epochs"] == {"random:resnet18": 2, "random:vit_small_patch16": 0}
    assert {r["model"]: r["lr"] for r in report["results"]} == settings["lr"]
    code, stdout, _ = run(["finetune", "--model", "random:resnet18", *common, "--frac", "0.34", "--epochs", "2",
                           "--lr", "1e-3", "--lr-drop-epochs", "1", "--tune-batch-size", "8",
                           "--out", str(tmp_path / "ft1")], capsys)
    assert code == 0, stdout
    settings = json.loads((tmp_path / "ft1" / "report.json").read_text())["probe_settings"]
    assert settings["lr"] == 1e-3 and settings["lr_drop_epochs"] == 1
