"""Spatiotemporal MAE (method=mae_st) against float64 loop-by-loop transcriptions of facebookresearch/mae_st
``models_mae.py`` (patchify, random_masking, forward_loss) and eminorhan/mae_st's temporal and centre masks;
then real runs of headcam-train on clips of the shared media: a few steps, and a bitwise-equal resume on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _train_helpers import DEMO, TINY, load, metrics
from PIL import Image

from headcam.console import UsageError
from headcam.train.cli import main
from headcam.train.config import load_train_config, resolved_clip_frames
from headcam.train.mae import random_masking
from headcam.train.mae_st import (
    MAEST,
    clip_loss,
    mask_noise,
    patchify,
    target_frames,
    unpatchify,
)
from headcam.train.video_vit import build_video_vit, separable_positions


def patchify_reference(clips: np.ndarray, p: int, u: int) -> np.ndarray:
    """Tubelet (ti, hi, wi) in (t, h, w) order; inside it frame du, row dy, column dx, channel c."""
    n, c, t, h, w = clips.shape
    out = np.zeros((n, (t // u) * (h // p) * (w // p), u * p * p * c))
    for b in range(n):
        i = 0
        for ti in range(t // u):
            for hi in range(h // p):
                for wi in range(w // p):
                    out[b, i] = [clips[b, ch, ti * u + du, hi * p + dy, wi * p + dx]
                                 for du in range(u) for dy in range(p) for dx in range(p) for ch in range(c)]
                    i += 1
    return out


def masking_reference(noise: np.ndarray, ratio: float) -> np.ndarray:
    """``random_masking``'s mask: per sample, the int(L·(1 − r)) smallest noises are kept (0), the rest masked."""
    n, length = noise.shape
    mask = np.ones((n, length))
    for b in range(n):
        for i in np.argsort(noise[b], kind="stable")[:int(length * (1 - ratio))]:
            mask[b, i] = 0
    return mask


def loss_reference(clips: np.ndarray, pred: np.ndarray, mask: np.ndarray, p: int, u: int, pred_t_dim: int,
                   norm_pix: bool) -> float:
    """``forward_loss``: target frames linspace(0, T-1, pred_t_dim) truncated, per-tubelet MSE, mean over masked."""
    frames = [int(v) for v in np.linspace(0, clips.shape[2] - 1, pred_t_dim)]
    target = patchify_reference(clips[:, :, frames], p, u)
    total, count = 0.0, 0
    for b in range(pred.shape[0]):
        for i in range(pred.shape[1]):
            if mask[b, i]:
                t = target[b, i]
                if norm_pix:
                    t = (t - t.mean()) / np.sqrt(t.var(ddof=1) + 1e-6)
                total += np.mean((pred[b, i] - t) ** 2)
                count += 1
    return total / count


def test_patchify_and_unpatchify_are_the_references_tubelet_order():
    clips = torch.randn(2, 3, 4, 8, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = patchify(clips, 4, 2)
    assert x.shape == (2, 2 * 2 * 3, 2 * 4 * 4 * 3)
    assert np.array_equal(x.numpy(), patchify_reference(clips.numpy(), 4, 2))
    assert torch.equal(unpatchify(x, 4, 2, (2, 2, 3)), clips)


def test_random_masking_keeps_the_smallest_noise_tubelets_and_restores_order():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 32, 5, dtype=torch.float64, generator=g)
    noise = mask_noise("random", 3, 32, g)
    kept, mask, ids_restore = random_masking(x, 0.9, noise)
    want = masking_reference(noise.numpy(), 0.9)
    assert kept.shape == (3, 3, 5) and np.array_equal(mask.numpy(), want)  # int(32 x 0.1) = 3 kept
    for b in range(3):  # the kept tokens, in the order of their noise
        assert torch.equal(kept[b], x[b, torch.argsort(noise[b])[:3]])
    shuffled = torch.gather(torch.cat([kept, torch.zeros(3, 29, 5, dtype=x.dtype)], 1), 1,
                            ids_restore.unsqueeze(-1).expand(-1, -1, 5))
    assert torch.equal(shuffled[mask == 0], x[mask == 0])  # ids_restore puts every kept token back in its place


@pytest.mark.parametrize("length", [32, 16, 36])
def test_temporal_and_centre_masks_are_eminorhans(length):
    keep = int(length * (1 - 0.75))
    _, temporal, _ = random_masking(torch.zeros(2, length, 1), 0.75, mask_noise("temporal", 2, length))
    assert temporal[0].tolist() == [0.0] * keep + [1.0] * (length - keep)  # the last part of the clip is hidden
    # center_masking: noise [0 .. L/2-1, L/2-1 .. 0]; ties (i, L-1-i) go to the earlier tubelet here
    ref = np.concatenate([np.arange(length // 2), np.arange(length // 2 - 1, -1, -1)])
    _, centre, _ = random_masking(torch.zeros(2, length, 1), 0.75, mask_noise("centre", 2, length))
    kept = set(np.nonzero(centre[1].numpy() == 0)[0])
    assert kept == set(np.argsort(ref, kind="stable")[:keep].tolist())
    assert kept == {*range((keep + 1) // 2), *range(length - keep // 2, length)}  # both ends kept, middle hidden


@pytest.mark.parametrize("norm_pix", [True, False])
@pytest.mark.parametrize(("frames", "pred_t_dim", "u"), [(8, 8, 2), (8, 4, 1), (16, 8, 1)])
def test_loss_is_forward_loss_on_the_masked_tubelets_only(norm_pix, frames, pred_t_dim, u):
    g = torch.Generator().manual_seed(2)
    clips = torch.randn(2, 3, frames, 8, 8, dtype=torch.float64, generator=g)
    length = (pred_t_dim // u) * 4
    pred = torch.randn(2, length, u * 4 * 4 * 3, dtype=torch.float64, generator=g)
    mask = torch.from_numpy(masking_reference(torch.rand(2, length, generator=g).numpy(), 0.75))
    got = clip_loss(pred, clips, mask, 4, u, pred_t_dim, norm_pix).item()
    assert got == pytest.approx(loss_reference(clips.numpy(), pred.numpy(), mask.numpy(), 4, u, pred_t_dim,
                                               norm_pix), rel=1e-12)
    visible = pred.clone()
    visible[mask == 0] += 3.0  # a visible tubelet's prediction does not count
    assert clip_loss(visible, clips, mask, 4, u, pred_t_dim, norm_pix).item() == pytest.approx(got, rel=1e-12)


def test_target_frames_and_separable_positions():
    clips = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(1, 3, 8, 1, 1)
    assert target_frames(clips, 4)[0, 0, :, 0, 0].tolist() == [0.0, 2.0, 4.0, 7.0]  # linspace(0, 7, 4) truncated
    spatial, temporal, cls = torch.randn(1, 6, 4), torch.randn(1, 3, 4), torch.randn(1, 1, 4)
    pos = separable_positions(spatial, temporal, cls)
    assert pos.shape == (1, 19, 4) and torch.equal(pos[0, 0], cls[0, 0])
    for t in range(3):
        for s in range(6):
            assert torch.equal(pos[0, 1 + t * 6 + s], spatial[0, s] + temporal[0, t])


def _model(frames: int = 4, **kw):
    torch.manual_seed(0)
    trunk = build_video_vit("vit_tiny_patch16_st", num_frames=frames, img_size=32)  # tables stored at 2 x 2
    return MAEST(trunk, decoder_width=32, decoder_depth=1, decoder_heads=4, **kw)


def test_encoder_and_decoder_are_the_references_forward_in_float64():
    """``forward_encoder`` gathers the positions with ids_keep after masking, ``forward_decoder`` adds its own
    after unshuffling; the model adds the encoder's before masking (the same sums) and must match exactly."""
    model = _model(frames=4, mask_ratio=0.75).double().eval()
    t = model.trunk
    g = torch.Generator().manual_seed(3)
    clips = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64, generator=g)
    noise = torch.rand(2, 8, generator=g)
    # the reference, step by step (models_mae.py forward_encoder / forward_decoder / forward_loss)
    x = t.patch_embed(clips)
    n, tt, hw, c = x.shape
    x = x.reshape(n, tt * hw, c)
    keep = int(tt * hw * (1 - 0.75))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore, ids_keep = torch.argsort(ids_shuffle, dim=1), ids_shuffle[:, :keep]
    x = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, c))
    pos = t.pos_embed_spatial.repeat(1, 2, 1) + torch.repeat_interleave(t.pos_embed_temporal, 4, dim=1)
    pos = torch.gather(pos.expand(n, -1, -1), 1, ids_keep.unsqueeze(-1).repeat(1, 1, c))
    pos = torch.cat([t.pos_embed_class.expand(n, -1, -1), pos], 1)
    x = torch.cat([t.cls_token.expand(n, -1, -1), x], 1) + pos
    for blk in t.blocks:
        x = blk(x)
    latent = t.norm(x)[:, 1:]
    y = model.decoder_embed(latent)
    y = torch.cat([y, model.mask_token.repeat(n, 8 - y.shape[1], 1)], 1)
    y = torch.gather(y, 1, ids_restore.unsqueeze(-1).repeat(1, 1, y.shape[2]))
    y = torch.cat([model.decoder_cls_token.expand(n, -1, -1), y], 1)
    dpos = model.decoder_pos_embed_spatial.repeat(1, 2, 1) + torch.repeat_interleave(
        model.decoder_pos_embed_temporal, 4, dim=1)
    y = y + torch.cat([model.decoder_pos_embed_class, dpos], 1)
    for blk in model.decoder_blocks:
        y = blk(y)
    pred = model.decoder_pred(model.decoder_norm(y))[:, 1:]

    got_latent, mask, got_restore = model.encode(clips, noise)
    assert torch.equal(got_restore, ids_restore) and mask.sum().item() == 2 * (8 - keep)
    assert torch.allclose(got_latent, latent, rtol=0, atol=1e-12)
    assert torch.allclose(model.decode(got_latent, got_restore, (2, 2, 2)), pred, rtol=0, atol=1e-12)


def test_initialisation_is_the_references():
    """models_mae.initialize_weights: tables trunc-normal 0.02, mask token N(0, 0.02), Linear (q, k, v each on
    its own) xavier-uniform with zero bias, LayerNorm 1 / 0; decoder_cls_token never initialised (zeros)."""
    model = MAEST(build_video_vit("vit_small_patch16_st", num_frames=4), decoder_width=512, decoder_depth=2)
    assert torch.equal(model.decoder_cls_token, torch.zeros(1, 1, 512))
    assert 0.015 < model.mask_token.std().item() < 0.025 and 0.018 < model.decoder_pos_embed_spatial.std() < 0.022
    q = model.decoder_blocks[0].attn.q.weight
    bound = (6 / (512 + 512)) ** 0.5  # xavier of one 512 x 512 projection, not of a fused 1536 x 512 qkv
    assert q.abs().max() <= bound and q.abs().max() > 0.95 * bound
    assert torch.equal(model.decoder_blocks[1].mlp.fc1.bias, torch.zeros(2048))
    assert torch.equal(model.decoder_norm.weight, torch.ones(512))
    assert model.decoder_pred.out_features == 2 * 16 * 16 * 3  # every frame predicted: u = t_patch_size = 2
    assert _model(frames=4, pred_t_dim=2).decoder_pred.out_features == 16 * 16 * 3  # 2 of 4 frames: u = 1
    with pytest.raises(UsageError, match="pred_t_dim=3"):
        _model(frames=4, pred_t_dim=3)


@pytest.mark.parametrize(("args", "message"), [
    (["method=mae_st", "arch=vit_small_patch16"], "method mae_st needs a video ViT arch"),
    (["method=mae_st", "arch=vit_tiny_patch16_st", "clip_frames=5"], "clip_frames must be a multiple of 2"),
    (["method=mae_st", "arch=vit_tiny_patch16_st", "backend=dali"], "only backend=torch loads"),
    (["method=mae_st", "arch=vit_tiny_patch16_st", "mae_st.mask_ratio=1"], "mae_st.mask_ratio must be in (0, 1)"),
    (["method=mae_st", "arch=vit_tiny_patch16_st", "size=40"], "multiple of 16"),
    (["method=simclr", "clip_frames=8"], "method simclr takes frames, not clips"),
])
def test_clip_settings_are_one_line_usage_errors(args, message):
    with pytest.raises(UsageError) as err:
        load_train_config(None, ["data=x", "device=cpu", *args])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_clip_method_resolves_its_frames_and_drops_channels_last():
    cfg = load_train_config(None, ["data=x", "device=cpu", "method=mae_st", "arch=vit_tiny_patch16_st"])
    assert resolved_clip_frames(cfg) == 16 and cfg.mae_st.mask_ratio == 0.9 and not cfg.channels_last
    assert resolved_clip_frames(load_train_config(None, ["data=x", "device=cpu"])) == 0


#: Tiny but real: the media shards' 4-frame clips at 32 px; 75 % masking keeps 2 of the 8 tubelets.
MAE_ST = ["method=mae_st", "arch=vit_tiny_patch16_st", "clip_frames=4", "mae_st.mask_ratio=0.75",
          "mae_st.decoder_width=32", "mae_st.decoder_depth=1", "mae_st.decoder_heads=4", "batch_size=4",
          "optim.name=adamw", "optim.warmup_steps=0", "optim.schedule=constant"]


def test_trains_on_media_clips_and_leaves_the_trunk_and_completions(media_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([DEMO, f"data={media_dataset}", f"out={run}", "steps=2", *TINY, *MAE_ST]) == 0
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    ckpt = load(run)
    trunk = build_video_vit("vit_tiny_patch16_st", num_frames=4)
    trunk.load_state_dict(ckpt["backbone"])  # the encoder is an ordinary video ViT for headcam-eval
    assert not any(k.startswith("decoder") for k in ckpt["backbone"])
    with Image.open(run / "completions.png") as img:  # original + 3 masks x (masked, completion), 2 clips
        img.load()
        assert img.height > 2 * img.width and len(np.unique(np.asarray(img.convert("L")))) > 50
    capsys.readouterr()
    assert main([DEMO, f"data={media_dataset}", f"out={run}", "steps=3", *TINY, *MAE_ST, "clip_frames=2"]) == 2
    assert "trained on clips of 4 frames, this run has clip_frames=2" in capsys.readouterr().err


def test_resume_is_bitwise_equal_on_cpu(media_dataset, tmp_path):
    """2 steps, then a resumed run to 4, equal the 4 steps run at once: weights, optimiser, data position and
    the masks (torch's generator comes back from the checkpoint)."""
    args = [f"data={media_dataset}", *TINY, *MAE_ST, "deterministic=true", "optim.lr=1e-3"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main([DEMO, *args, f"out={straight}", "steps=4"]) == 0
    assert main([DEMO, *args, f"out={resumed}", "steps=2"]) == 0
    assert main([DEMO, *args, f"out={resumed}", "steps=4", "resume=auto"]) == 0
    a, b = load(straight), load(resumed)
    assert a["step"] == b["step"] == 4 and a["data"] == b["data"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert [r["loss"] for r in metrics(straight)][2:] == [r["loss"] for r in metrics(resumed)][2:]


#: eminorhan/mae_st scripts/train_say.sh @ 9f2ba87 over pretrain.py's defaults there (configs/REFERENCES.md, mae_st).
SAY_SCRIPT = {
    "method": "mae_st", "arch": "vit_huge_patch14_st", "size": 224,  # --model mae_vit_huge_patch14 --img_size 224
    "clip_frames": 16, "clip_stride": 1,  # --num_frames 16; --sampling_rate 8 at 30 fps read as a 3.54 fps ingest
    "batch_size": 16,  # 4 GPUs x --batch_size_per_gpu 1 x --repeat_aug 16 = 64 clips, here over 4 ranks
    "steps": 120 * 6741,  # log: epochs 0-119; ceil(26,961 videos / 4 ranks) updates each
    "mae_st.mask_ratio": 0.9, "mae_st.norm_pix_loss": False, "mae_st.pred_t_dim": 16,
    "mae_st.decoder_width": 512, "mae_st.decoder_depth": 4, "mae_st.decoder_heads": 16,
    "optim.name": "adamw", "optim.lr": 1e-4, "optim.lr_scaling": "none", "optim.schedule": "constant",
    "optim.warmup_steps": 0, "optim.weight_decay": 0.05, "optim.decay_1d": False, "optim.betas": (0.9, 0.95),
    "optim.clip_grad": 0.1, "optim.clip_mode": "global",
    "augment.crop.scale": (0.5, 1.0), "augment.crop.ratio": (0.75, 1.3333), "augment.crop.interpolation": "bilinear",
    "augment.flip_p": 0.5, "augment.jitter.p": 0.0, "augment.grayscale_p": 0.0, "augment.blur.p": 0.0,
    "augment.mean": (0.45, 0.45, 0.45), "augment.std": (0.225, 0.225, 0.225),
    "workers": 16, "ckpt_every": 6741,
}


def test_the_say_config_is_the_script_it_names():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / "mae_st_say_vith14.yaml"
    cfg = load_train_config(path, ["data=x", "device=cuda"])
    differ = {}
    for key, want in SAY_SCRIPT.items():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        value = tuple(value) if isinstance(value, list) else value
        if value != want:
            differ[key] = (value, want)
    assert not differ, differ
    assert cfg.precision == "fp32" and cfg.channels_last is False  # fp32 as the script; clips have no channels-last
    head = path.read_text().split("\nmethod:")[0]
    assert "eminorhan/mae_st scripts/train_say.sh" in head and "9f2ba87" in head and "Not transcribable" in head


def test_the_say_model_has_the_references_shapes_without_allocating_it():
    with torch.device("meta"):
        model = MAEST(build_video_vit("vit_huge_patch14_st"), norm_pix_loss=False, pred_t_dim=16)
    assert model.trunk.pos_embed_spatial.shape == (1, 16 * 16, 1280) and model.trunk.pos_embed_temporal.shape[1] == 8
    assert model.decoder_pos_embed_spatial.shape == (1, 256, 512) and len(model.decoder_blocks) == 4
    assert model.decoder_pred.out_features == 2 * 14 * 14 * 3 and model.decoder_blocks[0].attn.num_heads == 16
    assert len(model.trunk.blocks) == 32
