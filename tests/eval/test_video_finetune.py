"""Few-shot video fine-tuning (issue 19 §3): N clips per class drawn seeded, class-balanced and nested, clips
counted only when long enough, the mae_st recipe transcribed from eminorhan/mae_st, and a spatiotemporal ViT
tuned on clips of the shared media through the CLI with the final and best epochs in its report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from headcam.console import UsageError
from headcam.eval.cli import main
from headcam.eval.fewshot import clip_key_map, clip_keys, clip_side, clip_videos, shots_subset
from headcam.eval.finetune import NO_WEIGHT_DECAY, FinetuneOptions, build_net, param_groups
from headcam.eval.models import load_model
from headcam.eval.protocols import resolve_protocol
from headcam.shards.dataset import open_dataset

FRAMES = 16  # random:vit_*_st clips: the reference's num_frames (clip_data: conftest.py)


def _sides(data: Path, span: int = FRAMES):
    plan = resolve_protocol("splits", open_dataset(data))
    return plan, clip_side(plan.train, span), clip_side(plan.test, span)


def test_clip_sides_hold_one_row_per_long_enough_clip(clip_data):
    plan, (train, short), _ = _sides(clip_data)
    rows = pq.read_table(clip_data / "manifest.parquet").to_pylist()
    frames_of: dict[int, list[dict]] = {}
    for r in rows:
        if r["split"] == "train":
            frames_of.setdefault(r["clip"], []).append(r)
    long = {c: fs for c, fs in frames_of.items() if len(fs) >= FRAMES}
    assert len(train.keys) == len(long) and short == len(frames_of) - len(long) > 0
    first = {min(fs, key=lambda r: r["frame_index"])["key"]: fs for fs in long.values()}
    assert set(train.keys) == set(first)  # each clip's row is its first frame in time
    assert list(train.labels) == [first[k][0]["label"] for k in train.keys]
    assert clip_keys(train) == {r["key"] for fs in long.values() for r in fs}
    key_map = clip_key_map(train)
    assert all(key_map[r["key"]] == k for k, fs in first.items() for r in fs)
    # a span of 1 keeps every clip, the short ones too
    assert clip_side(plan.train, 1)[1] == 0 and len(clip_side(plan.train, 1)[0].keys) == len(frames_of)


def test_shots_are_class_balanced_seeded_and_nested(clip_data):
    plan, (train, _), _ = _sides(clip_data)
    assert np.bincount(train.labels).tolist() == [2, 3, 7]
    one = shots_subset(train, 1, seed=0, class_names=plan.class_names)
    two = shots_subset(train, 2, seed=0, class_names=plan.class_names)
    assert np.bincount(one.labels).tolist() == [1, 1, 1] and np.bincount(two.labels).tolist() == [2, 2, 2]
    assert set(one.keys) < set(two.keys) <= set(train.keys)  # the 1-shot clips are among the 2-shot ones
    assert shots_subset(train, 2, seed=0, class_names=plan.class_names).keys == two.keys
    others = {tuple(shots_subset(train, 2, seed=s, class_names=plan.class_names).keys) for s in range(1, 6)}
    assert others - {tuple(two.keys)}  # another seed, another draw
    with pytest.raises(UsageError, match=r"^--shots 3: class '0' has 2 training clips of at least 16 frames; use "
                                         r"fewer --shots$"):
        shots_subset(train, 3, seed=0, class_names=plan.class_names, units="clips of at least 16 frames")
    with pytest.raises(UsageError, match=r"class '0' has 2 .* \(and 1 more class\)"):
        shots_subset(train, 4, seed=0, class_names=plan.class_names, units="clips")
    # a class the test side scores but no training clip is long enough for is named too
    without = dataclasses.replace(train, keys=[k for k, c in zip(train.keys, train.labels, strict=True) if c != 2],
                                  labels=train.labels[train.labels != 2])
    with pytest.raises(UsageError, match="class '2' has 0 training clips"):
        shots_subset(without, 1, seed=0, class_names=plan.class_names, classes=np.array([0, 1, 2]), units="clips")


# eminorhan/mae_st@ad89b29: finetune.py parser defaults + scripts/finetune/finetune_sayavakepicutego4d_ssv2.sh
MAE_ST = {
    "clip_frames": 16,  # sh --num_frames 16
    "frame_interval": (128 - 1) / 15 / 30,  # sh --sampling_rate 8; kinetics.py:74, :329-338: linspace over 128
    "views": ("mae", ("crop.scale=[0.08, 1.0]", "crop.ratio=[0.75, 1.3333]", "crop.interpolation=bilinear")),
    "view_norm": ("mean=[0.45, 0.45, 0.45]", "std=[0.225, 0.225, 0.225]"),  # util/kinetics.py:85-86
    "test_resize_ratio": 224 / 256,  # kinetics.py:252-256 short side 256, crop 224
    "features": "cls", "head": "linear", "head_dropout": 0.3,  # models_vit.py:167-171; finetune.py:46
    "head_init": "normal", "head_std": 0.02,  # models_vit.py:101
    "optimizer": "adamw", "lr": 0.0012, "lr_scale_batch": 256,  # sh --blr 0.0012; finetune.py:227 x batch / 256
    "batch_size": 16, "accum_iter": 2,  # sh --batch_size_per_gpu 16 --accum_iter 2 (1 GPU)
    "schedule": "warmup-cosine", "warmup_epochs": 0, "min_lr": 1e-5, "schedule_epochs": 100000,  # :55-56; sh
    "weight_decay": 1e-4, "layer_decay": 0.8, "drop_path": 0.1,  # finetune.py:51, :54, :47
    "label_smoothing": 0.1, "mixup": 0.0, "cutmix": 0.0,  # finetune.py:61; sh --mixup 0 --cutmix 0.0
    "rand_augment": None, "reprob": 0.0,  # --rand_aug unset: kinetics.py:405 erases only under it
    "clip_grad": 5.0, "precision": "fp16",  # sh --clip_grad 5.0; finetune.py:117-118
    "reports_best": True, "best_top5": "selects",  # finetune.py:266-274: saved on a higher top-5
}


def test_mae_st_recipe_is_the_reference():
    preset = FinetuneOptions(recipe="mae_st").resolve(None)
    assert {k: getattr(preset, k) for k in MAE_ST} == MAE_ST
    # the logs' train_lr: 1.2e-3 x 32 / 256 = 1.5e-4, the cosine over 100000 epochs flat to 1e-7 for 20 of them
    # (models_finetuned/new/sayavakepicutego4d_ssv2-10shot_log.txt: 1.4999999060e-4 in epoch 16)
    assert preset.effective_lr(32) == pytest.approx(1.5e-4)
    assert preset.lr_at(0, 32) == pytest.approx(1.5e-4) and preset.lr_at(20, 32) == pytest.approx(1.5e-4, rel=1e-7)
    assert preset.lr_at(16.5, 32) == pytest.approx(1.4999999060e-4, rel=1e-8)
    assert preset.lr_at(50000, 32) == pytest.approx(1e-5 + (1.5e-4 - 1e-5) / 2)  # it is a cosine all the same
    # 0.282 s between clip frames: 8.47 frames at 30 fps (8, rounded), every frame of a 3.54 fps ingest
    assert (preset.clip_stride(30), preset.clip_stride(3.54), preset.clip_stride(3.75), preset.clip_stride(8),
            preset.clip_stride(None)) == (8, 1, 1, 2, 1)
    assert [int(i) for i in np.linspace(0, 127, 16)][:4] == [0, 8, 16, 25]  # the reference's own indices at 30 fps
    assert "best epoch by top-5" in preset.settings()["reported"]
    with pytest.raises(UsageError, match="fine-tunes ViTs"):
        FinetuneOptions(recipe="mae_st").resolve(load_model("random:resnet18"))


def test_video_vit_net_has_the_references_head_and_groups():
    model = load_model("random:vit_tiny_patch16_st")
    preset = FinetuneOptions(recipe="mae_st").resolve(model)
    torch.manual_seed(0)
    net = build_net(model, preset, 200)
    dropout, linear = net.head
    assert isinstance(dropout, torch.nn.Dropout) and dropout.p == 0.3
    assert linear.weight.std().item() == pytest.approx(0.02, rel=0.05) and linear.bias.abs().max() > 0  # normal_
    rates = [b.drop_path1.drop_prob if hasattr(b.drop_path1, "drop_prob") else 0.0 for b in net.features.blocks]
    assert rates == pytest.approx(np.linspace(0, 0.1, 12).tolist())
    torch.testing.assert_close(net.features.state_dict()["blocks.3.attn.q.weight"],
                               model.trunk.state_dict()["blocks.3.attn.q.weight"])  # rebuilt with the weights
    # mae_st util/lr_decay.py: layer 0 = cls / pos_embed* / patch_embed, block i -> i + 1, the rest 13; no decay on
    # 1-D tensors and models_vit.no_weight_decay()
    name = {id(p): n.removeprefix("features.") for n, p in net.named_parameters()}
    got = {name[id(p)]: (g["lr_scale"], g["weight_decay"]) for g in param_groups(net, preset) for p in g["params"]}
    assert len(got) == len(name)
    for n, p in net.named_parameters():
        n = n.removeprefix("features.")
        layer = 0 if n.startswith(("cls_token", "pos_embed", "patch_embed")) else \
            int(n.split(".")[1]) + 1 if n.startswith("blocks.") else 13
        decay = 0.0 if p.ndim == 1 or n in NO_WEIGHT_DECAY else 1e-4
        assert got[n] == (pytest.approx(0.8 ** (13 - layer)), decay), n
    assert got["pos_embed_spatial"][1] == 0.0 and got["pos_embed_temporal"][1] == 0.0


def _run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_video_vit_tunes_on_clips_and_the_report_holds_the_numbers(clip_data, tmp_path, capsys):
    out = tmp_path / "ft"
    code, stdout, err = _run(["finetune", "--recipe", "mae_st", "--model", "random:vit_tiny_patch16_st", "--data",
                              str(clip_data), "--shots", "2", "--clip-stride", "1", "--size", "32", "--epochs", "2",
                              "--tune-batch-size", "2", "--batch-size", "64", "--no-cache", "--out", str(out)], capsys)
    assert code == 0, stdout + err
    report = json.loads((out / "report.json").read_text())
    row, settings = report["results"][0], report["probe_settings"]
    _, (train, _), (test, _) = _sides(clip_data)
    assert row["probe"] == "finetune2shot/mae_st" and "finetune2shot/mae_st" in stdout
    assert (row["n_train"], row["n_test"], row["samples"]) == (6, len(test.keys), "clips")
    assert settings["subset"]["per_class"] == {"0": 2, "1": 2, "2": 2} and settings["shots"] == 2
    assert settings["clips"]["frames"] == row["clip_frames"] == FRAMES and row["clip_stride"] == 1
    assert settings["clips"]["test_clips"] == len(test.keys) and settings["clips"]["too_short"]["test"] > 0
    # 6 clips in steps of 2: one update of 2 x 2 clips an epoch, the lr scaled by that effective batch of 4
    assert row["lr"] == pytest.approx(0.0012 * 4 / 256) and (row["batch_size"], row["accum_iter"]) == (2, 2)
    assert len(row["train_loss"]) == 2 and np.isfinite(row["train_loss"]).all()
    # tested after each epoch; the final epoch is top1/top5, the best one (by top-5) labelled as such
    assert len(row["top1_per_epoch"]) == 2 and row["top1"] == row["top1_per_epoch"][-1]
    assert row["best_top5"] == max(row["top5_per_epoch"])
    assert row["top5_per_epoch"].index(row["best_top5"]) == row["best_epoch"] - 1
    assert row["best_top1"] == row["top1_per_epoch"][row["best_epoch"] - 1]
    assert "best epoch by top-5" in row["reported"] and "best epoch" in (out / "report.md").read_text()
    correct = round(row["top1"] * len(test.keys) / 100)
    assert row["top1"] == pytest.approx(100 * correct / len(test.keys), abs=0.01)  # a share of whole clips


def test_user_mistakes_are_one_line(clip_data, tiny_dataset, tmp_path, capsys):
    base = ["finetune", "--size", "32", "--no-cache", "--out", str(tmp_path / "x")]
    cases = [
        (["--recipe", "mae_st", "--model", "random:vit_tiny_patch16_st", "--data", str(clip_data), "--shots", "3",
          "--clip-stride", "1"], "--shots 3: class '0' has 2 training clips of at least 16 frames"),
        (["--recipe", "mae_st", "--model", "random:vit_mini_patch4", "--data", str(clip_data), "--shots", "1"],
         "tunes a spatiotemporal ViT (vit_*_st) on the clips of a video dataset"),
        (["--recipe", "mae_st", "--model", "random:vit_tiny_patch16_st", "--data", str(tiny_dataset), "--shots", "1"],
         "holds images"),
        (["--recipe", "mae", "--model", "random:vit_tiny_patch16_st", "--data", str(clip_data), "--shots", "1"],
         "--recipe mae on clips: it augments images"),
        (["--model", "random:vit_tiny_patch16_st", "--data", str(clip_data), "--shots", "1", "--frac", "0.5"],
         "drop --frac and --balanced"),
        (["--recipe", "mae_st", "--model", "random:vit_tiny_patch16_st", "--data", str(clip_data), "--shots", "1",
          "--clip-stride", "9"], "no held-out clip holds 136 frames"),
        (["--recipe", "mae_st", "--model", "random:vit_tiny_patch16_st", "--data", str(clip_data), "--shots", "2",
          "--clip-stride", "1", "--tune-batch-size", "4"], "updates every 2 batches: 6 tuning sample(s) in batches "
                                                          "of 4 never reach one update"),
    ]
    for extra, message in cases:
        code, _, err = _run([*base, *extra], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, err


def test_shots_on_an_image_dataset_count_samples(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "img"
    code, stdout, err = _run(["finetune", "--model", "random:vit_mini_patch4", "--data", str(tiny_dataset), "--shots",
                              "3", "--size", "32", "--epochs", "1", "--tune-batch-size", "3", "--no-cache", "--out",
                              str(out)], capsys)
    assert code == 0, stdout + err
    report = json.loads((out / "report.json").read_text())
    assert report["probe_settings"]["subset"]["per_class"] == {"city": 3, "nasa": 3, "tree": 3}
    row = report["results"][0]
    assert row["probe"] == "finetune3shot" and row["n_train"] == 9 and "clip_frames" not in row


@pytest.mark.gpu
def test_clip_finetune_on_cuda_in_fp16(clip_data, tmp_path, capsys):
    """mae_st's fp16 autocast with the gradient scaler, unscaled before the gradients are clipped, on CUDA."""
    out = tmp_path / "cuda"
    code, stdout, err = _run(["finetune", "--recipe", "mae_st", "--model", "random:vit_tiny_patch16_st", "--data",
                              str(clip_data), "--shots", "2", "--clip-stride", "1", "--size", "32", "--epochs", "2",
                              "--tune-batch-size", "2", "--device", "cuda", "--no-cache", "--out", str(out)], capsys)
    assert code == 0, stdout + err
    row = json.loads((out / "report.json").read_text())["results"][0]
    assert np.isfinite(row["train_loss"]).all() and len(row["top5_per_epoch"]) == 2 and row["n_train"] == 6


@pytest.fixture(scope="module")
def folder_data(media_dir, tmp_path_factory) -> Path:
    """A set labelled by folder (``--label-from parent``): class a = nasa + tree, class b = city + tree; every 2nd
    video of a class (by name) held out, so each class trains on one video (nasa: 6 clips of 16 frames, city: 3)."""
    from headcam.ingest.cli import main as ingest

    root = tmp_path_factory.mktemp("folders")
    for link, video in (("a/n1.mp4", "nasa_13013.mp4"), ("a/t1.avi", "tree.avi"), ("b/c1.mpg", "cityCC0.mpg"),
                        ("b/t2.avi", "tree.avi")):
        (root / "in" / link).parent.mkdir(parents=True, exist_ok=True)
        (root / "in" / link).symlink_to(media_dir / video)
    assert ingest(["videos", "--out", str(root / "ds"), "--size", "32", "--fps", "8", "--clip-len", "16",
                   "--val-every", "2", "--label-from", "parent", "--workers", "1", "--", str(root / "in")]) == 0
    return root / "ds"


def test_a_shot_of_a_folder_labelled_set_is_a_video(folder_data, tmp_path, capsys):
    plan, (train, _), (test, _) = _sides(folder_data)
    videos = clip_videos(train)
    assert plan.class_names == ["a", "b"] and len(set(videos.tolist())) == 2  # one training video per class
    one = shots_subset(train, 1, seed=0, class_names=plan.class_names, groups=videos)
    assert one.keys == train.keys  # the one video of each class, every clip of it
    with pytest.raises(UsageError, match="^--shots 2: class 'a' has 1 training videos with a clip of at least 16 "
                                         r"frames \(and 1 more class\); use fewer --shots$"):
        shots_subset(train, 2, seed=0, class_names=plan.class_names, groups=videos,
                     units="videos with a clip of at least 16 frames")
    out = tmp_path / "ft"
    code, stdout, err = _run(["finetune", "--recipe", "mae_st", "--model", "random:vit_tiny_patch16_st", "--data",
                              str(folder_data), "--shots", "1", "--clip-stride", "1", "--size", "32", "--epochs", "1",
                              "--tune-batch-size", "3", "--batch-size", "16", "--no-cache", "--out", str(out)], capsys)
    assert code == 0, stdout + err
    report = json.loads((out / "report.json").read_text())
    settings, row = report["probe_settings"], report["results"][0]
    per_class = dict(zip(*np.unique(np.array(plan.class_names)[train.labels], return_counts=True), strict=True))
    assert settings["clips"]["shot"] == "video" and settings["subset"]["per_class"] == per_class
    assert (row["n_train"], row["n_test"], row["probe"]) == (len(train.keys), len(test.keys), "finetune1shot/mae_st")
