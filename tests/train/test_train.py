"""The real trainer on real shards: every method, overfitting, checkpoint format, bad input."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
import torch
from _train_helpers import DEMO, TINY, metrics

from headcam.shards.dataset import open_dataset
from headcam.train import registry
from headcam.train.backbones import VIDEO_VITS, build_backbone
from headcam.train.cli import main
from headcam.train.video_vit import clip_shape

#: Small settings per method, one entry for every method of the registry (checked below), so a new method
#: is trained here as soon as it is registered.
METHOD_ARGS = {
    "tc": [], "moco": [], "moco_temporal": [], "simclr": [], "byol": ["byol.proj_hidden=64", "byol.pred_hidden=64"],
    "dino": ["dino.out_dim=256", "dino.hidden_dim=64", "dino.bottleneck_dim=32"],
    "mae": ["arch=vit_small_patch16", "mae.decoder_width=64", "mae.decoder_depth=1", "mae.decoder_heads=4"],
    "mae_st": ["arch=vit_small_patch16_st", "clip_frames=4", "mae_st.mask_ratio=0.75", "mae_st.decoder_width=64",
               "mae_st.decoder_depth=1", "mae_st.decoder_heads=4"],  # the media shards' clips hold 4 frames
    "vicreg": ["vicreg.expander=[64,64]"],
}


def test_every_registered_method_is_trained_here():
    assert list(METHOD_ARGS) == list(registry.names())


@pytest.mark.parametrize("method", registry.names())
def test_each_method_trains_and_writes_a_loadable_checkpoint(method, media_dataset, tmp_path, capsys):
    """On frames that headcam-ingest decoded from the shared media; labels = temporal segments."""
    run = tmp_path / method
    assert main([DEMO, f"data={media_dataset}", f"out={run}", f"method={method}", "steps=3", *TINY,
                 *METHOD_ARGS.get(method, [])]) == 0
    summary = capsys.readouterr().out.splitlines()[0]  # the compact summary, printed before the first step
    assert summary.startswith(f"{method} ") and "3 steps" in summary and str(run / "config.yaml") in summary
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and r["img_per_s"] > 0 and 0 <= r["data_wait_frac"] <= 1 for r in rows)
    assert (run / "config.yaml").exists() and any((run / "tb").iterdir())

    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)  # what eval does
    assert ckpt["format"] == "headcam-checkpoint" and ckpt["version"] == 1 and ckpt["step"] == 3
    assert ckpt["method"] == method and ckpt["config"]["method"] == method and ckpt["config"]["seed"] == 0
    clip = clip_shape(ckpt["backbone"]) if ckpt["arch"] in VIDEO_VITS else {}  # a video ViT's frames: its weights'
    trunk, dim = build_backbone(ckpt["arch"], ckpt["small_stem"], **clip)
    trunk.load_state_dict(ckpt["backbone"])
    assert dim == ckpt["feat_dim"] == (384 if ckpt["arch"].startswith("vit_small_patch16") else 512)
    assert not any(k.startswith("module.") for k in ckpt["backbone"])
    if registry.entry(method).head:
        n_classes = open_dataset(media_dataset).n_classes
        assert n_classes > 3 and ckpt["n_classes"] == n_classes and ckpt["head"]["weight"].shape == (n_classes, 512)
    else:
        assert ckpt["n_classes"] is None and ckpt["head"] is None


@pytest.mark.parametrize(("method", "lr"), [("tc", 1e-3), ("simclr", 1e-4), ("moco", 1e-4), ("byol", 1e-3),
                                           ("vicreg", 3e-3)])
def test_overfits_a_tiny_set(method, lr, tiny_dataset, tmp_path):
    """Without augmentation (recipe eval), on one batch of 24 of the 27 images, the loss must fall clearly."""
    run = tmp_path / method
    extra = {"moco": ["moco.m=0.5", "moco.queue=48"], "byol": ["byol.proj_hidden=256", "byol.pred_hidden=256"],
             "vicreg": ["vicreg.expander=[16,16]"]}.get(method, [])
    assert main([DEMO, f"data={tiny_dataset}", f"out={run}", f"method={method}", "recipe=eval", "steps=12",
                 *TINY, "batch_size=24", f"optim.lr={lr}", "optim.schedule=constant", *extra]) == 0
    losses = [r["loss"] for r in metrics(run)]
    floor = 0.0
    if method == "moco":
        # the queue (48) holds this very batch's keys twice once it is full (from step 3 on), so each query
        # has 1 + 2 copies of its key among the logits: the loss cannot go below log(3)
        losses, floor = losses[1:], math.log(1 + 48 / 24)
    first, last = sum(losses[:2]) / 2, sum(losses[-3:]) / 3
    # VICReg's variance and covariance terms are pushed down through the expander's BatchNorm on 24 images
    # (identical views: invariance is 0 throughout), slower than a contrastive loss: a 35 % fall in 12 steps
    fall = 0.65 if method == "vicreg" else 0.5
    assert last - floor < fall * (first - floor), losses


def test_simclr_three_views_trains(tiny_dataset, tmp_path):
    assert main([DEMO, f"data={tiny_dataset}", f"out={tmp_path}", "n_views=3", "steps=2", *TINY]) == 0
    assert all(math.isfinite(r["loss"]) for r in metrics(tmp_path))


def test_rerun_of_a_finished_run_does_nothing(tiny_dataset, tmp_path, capsys):
    args = [DEMO, f"data={tiny_dataset}", f"out={tmp_path}", "method=tc", "steps=2", *TINY]
    assert main(args) == 0
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(("override", "message"), [
    ("optim.lrr=0.1", "did you mean 'optim.lr'"),
    ("arch=resnet1000", "arch='resnet1000' is not one of"),
    ("method=swav", "method='swav' is not one of"),
    ("moco.queue=100", "must be a multiple of the global batch 8"),
    ("data=/nonexistent", "dataset directory not found"),
    ("split=test", "no split 'test'"),
    ("batch_size=4096", "batch_size"),
])
def test_user_errors_are_one_line(override, message, tiny_dataset, tmp_path, capsys):
    method = "method=moco" if override.startswith("moco.") else "method=simclr"
    assert main([DEMO, f"data={tiny_dataset}", f"out={tmp_path}", "steps=1", *TINY, method, override]) == 2
    assert message in _error(capsys)


def test_tc_on_unlabelled_data_is_a_user_error(copy_dataset, tmp_path, capsys):
    ds = copy_dataset(manifest_fn=lambda t: t.set_column(t.schema.get_field_index("label"), "label",
                                                        pa.array([-1] * t.num_rows, pa.int64())))
    assert main([DEMO, f"data={ds}", f"out={tmp_path / 'run'}", "method=tc", "steps=1", *TINY]) == 2
    assert "unlabelled" in _error(capsys)


def test_empty_dataset_is_a_user_error(copy_dataset, tmp_path, capsys):
    ds = copy_dataset(manifest_fn=lambda t: t.slice(0, 0))
    assert main([DEMO, f"data={ds}", f"out={tmp_path / 'run'}", "steps=1", *TINY]) == 2
    assert "empty" in _error(capsys)


def test_class_count_mismatch_on_resume(tiny_dataset, copy_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([DEMO, f"data={tiny_dataset}", f"out={run}", "method=tc", "steps=1", *TINY]) == 0
    capsys.readouterr()
    more = copy_dataset(meta_fn=lambda m: {**m, "classes": {"names": list("abcd"), "n_classes": 4}})
    assert main([DEMO, f"data={more}", f"out={run}", "method=tc", "steps=2", *TINY]) == 2
    assert "trained with 3 classes, this dataset has 4" in _error(capsys)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    code = main([DEMO, f"data={tiny_dataset}", f"out={run}", "method=tc", "steps=6", *TINY, "ckpt_every=1",
                 "optim.name=sgd", "optim.lr=1e30", "optim.schedule=constant"])
    assert code == 1
    err = _error(capsys)
    assert "loss is nan" in err or "loss is inf" in err
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert 1 <= ckpt["step"] < 6
    assert all(torch.isfinite(v).all() for v in ckpt["backbone"].values() if v.is_floating_point())


@pytest.mark.parametrize("extra", [["backend=dali"], ["augment.blur.p=0.0", "augment.grayscale_p=1.0"]],
                         ids=["dali-backend", "augment-override"])
def test_backend_and_augment_overrides_reach_the_loader(extra, tiny_dataset, tmp_path):
    assert main([DEMO, f"data={tiny_dataset}", f"out={tmp_path}", "steps=2", *TINY, *extra]) == 0
    assert all(math.isfinite(r["loss"]) for r in metrics(tmp_path))


def test_epochs_mean_steps_of_the_first_epoch(tiny_dataset, tmp_path):
    """27 train samples in one slot at batch 8: 3 steps an epoch, so 2 epochs are 6 steps; warm-up then cosine."""
    assert main([DEMO, f"data={tiny_dataset}", f"out={tmp_path}", "method=tc", "steps=0", "epochs=2", *TINY,
                 "optim.lr=0.001", "optim.warmup_steps=2"]) == 0
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and [r["epoch"] for r in rows] == [0, 0, 0, 1, 1, 1]
    lrs = [r["lr"] for r in rows]
    assert lrs[:3] == pytest.approx([5e-4, 1e-3, 1e-3]) and lrs[3] > lrs[4] > lrs[5] > 0


@pytest.mark.gpu
def test_cuda_bf16_channels_last_trains(tiny_dataset, tmp_path):
    for method in ("simclr", "moco"):
        run = tmp_path / method
        assert main([DEMO, f"data={tiny_dataset}", f"out={run}", f"method={method}", "steps=3", *TINY,
                     "device=cuda", "bf16=true", "channels_last=true"]) == 0
        assert all(math.isfinite(r["loss"]) for r in metrics(run))


def test_mistyped_augment_key_is_one_line(tiny_dataset, tmp_path, capsys):
    assert main([DEMO, f"data={tiny_dataset}", f"out={tmp_path}", "steps=1", *TINY, "augment.grayscale=1"]) == 2
    assert "grayscale_p" in _error(capsys)
