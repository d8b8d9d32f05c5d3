"""Clip attention maps of a spatiotemporal ViT (issue 19 §3): eminorhan/mae_st ``visualize_attn.py``'s last-block
CLS attention, averaged over heads, one map per tubelet, against a float64 transcription; the grids that
``headcam-eval analyze --attention`` draws for held-out clips and names in its report."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from PIL import Image

from headcam.eval.attention import (
    CLIP_FRAME_INTERVAL,
    attention_weights,
    clip_attention,
    clip_attention_grid,
    last_selfattention,
    video_vit_of,
    vit_of,
)
from headcam.eval.cli import main
from headcam.eval.finetune_presets import interval_stride
from headcam.train.video_vit import build_video_vit


def tiny_video_vit(frames: int = 4, side: int = 48):
    """A vit_tiny_patch16_st whose stored position grid is ``side`` px (get_last_selfattention does not resample)."""
    torch.manual_seed(0)
    return build_video_vit("vit_tiny_patch16_st", num_frames=frames, img_size=side).eval()


@torch.no_grad()
def visualize_attn_float64(vit, video: torch.Tensor) -> torch.Tensor:
    """models_vit.py ``get_last_selfattention`` (:175-210: tubelets ``einsum("ncts->ntsc")``, CLS, separable
    positions, every block but the last, the last block's ``q``/``k`` softmax at head_dim^-0.5) and
    visualize_attn.py:344-347 (``attn[:, 0, 1:].view([heads, t, h, w])``, mean over heads), in float64."""
    v = copy.deepcopy(vit).double()
    x = torch.einsum("ncts->ntsc", v.patch_embed.proj(video.double()).flatten(3))
    n, t, hw, c = x.shape
    x = torch.cat([v.cls_token.expand(n, -1, -1), x.reshape(n, t * hw, c)], dim=1)
    pos = v.pos_embed_spatial.repeat(1, t, 1) + torch.repeat_interleave(v.pos_embed_temporal, hw, dim=1)
    x = x + torch.cat([v.pos_embed_class.expand(n, -1, -1), pos.expand(n, -1, -1)], dim=1)
    for blk in v.blocks[:-1]:
        x = blk(x)
    last = v.blocks[-1]
    y = last.norm1(x)
    heads = last.attn.num_heads
    q, k = (f(y).reshape(n, -1, heads, c // heads).permute(0, 2, 1, 3) for f in (last.attn.q, last.attn.k))
    attn = (q @ k.transpose(-2, -1) * (c // heads) ** -0.5).softmax(dim=-1)
    h, w = video.shape[-2] // 16, video.shape[-1] // 16
    return attn[:, :, 0, 1:].reshape(n, heads, t, h, w).mean(dim=1)


def test_clip_attention_is_visualize_attns_in_float64():
    vit = tiny_video_vit()
    clips = torch.randn(2, 3, 4, 48, 48)
    ours = clip_attention(vit, clips)
    ref = visualize_attn_float64(vit, clips)
    assert ours.shape == (2, 2, 3, 3) and ours.dtype == torch.float32  # 2 tubelets of 3 x 3 patches
    torch.testing.assert_close(ours.double(), ref, rtol=0, atol=1e-6)  # measured 7e-8
    assert ref.std() > 1e-3  # not uniform: the comparison can fail
    # the weights a video block applies: rows sum to one, and attention @ v -> proj is the module's own output
    attn, x = vit.blocks[-1].attn, torch.randn(2, 13, vit.embed_dim)
    with torch.no_grad():
        w = attention_weights(attn, x)
        rebuilt = attn.proj((w @ attn.heads(x)[2]).transpose(1, 2).reshape(x.shape))
    torch.testing.assert_close(rebuilt, attn(x), rtol=1e-5, atol=1e-6)
    assert last_selfattention(vit, clips).shape == (2, 3, 19, 19)
    # another side: the positions resample and the grid follows the clip (a remainder of a patch dropped)
    assert clip_attention(vit, torch.randn(1, 3, 4, 32, 50)).shape == (1, 2, 2, 3)
    assert video_vit_of(vit) is vit and vit_of(vit) is None and video_vit_of(torch.nn.Conv2d(3, 3, 1)) is None


def test_clip_grid_is_frames_over_tubelet_maps(tmp_path):
    frames = (torch.rand(4, 32, 48, 3) * 255).to(torch.uint8).numpy()
    maps = torch.rand(2, 2, 3)
    clip_attention_grid(frames, maps, 16, "clip", tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as im:
        im.verify()
    with Image.open(tmp_path / "g.png") as im:
        assert im.size[0] < 2 * im.size[1]  # two tubelets side by side, two rows (frame over map)


def test_analyze_attention_on_clips_writes_grids_named_in_report(clip_data, tmp_path, capsys):
    out = tmp_path / "ana"
    code = main(["analyze", "--model", "random:vit_tiny_patch16_st", "--data", str(clip_data), "--out", str(out),
                 "--size", "32", "--units", "2", "--per-unit", "2", "--maps", "2", "--attention", "--no-cache"])
    assert code == 0 and "2 clip attention grids" in capsys.readouterr().out
    ca = json.loads((out / "analysis.json").read_text())["clip_attention"]
    # 16 frames at the default stride: 64 / 15 frames of 30 fps video (0.142 s) is one sampled frame at 8 fps
    assert interval_stride(CLIP_FRAME_INTERVAL, 8.0) == 1 and interval_stride(CLIP_FRAME_INTERVAL, 30.0) == 4
    assert (ca["frames"], ca["stride"], ca["tubelet"], ca["patch"], ca["heads"]) == (16, 1, 2, 16, 3)
    assert ca["grid"] == [8, 2, 2] and len(ca["grids"]) == 2 and ca["too_short"] > 0
    report = (out / "report.md").read_text()
    assert "## Clip attention" in report
    for path in ca["grids"]:
        assert path.startswith("clip_attention/") and f"]({path})" in report
        with Image.open(out / path) as im:
            im.verify()


def test_clip_stride_needs_attention(clip_data, tmp_path, capsys):
    args = ["analyze", "--model", "random:vit_tiny_patch16_st", "--data", str(clip_data), "--out", str(tmp_path),
            "--size", "32", "--no-cache"]
    assert main([*args, "--clip-stride", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs --attention" in err
    assert main([*args, "--attention", "--clip-stride", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no held-out clip holds 136 frames" in err


def test_clip_attention_needs_a_video_dataset(tiny_dataset, tmp_path, capsys):
    assert main(["analyze", "--model", "random:vit_tiny_patch16_st", "--data", str(tiny_dataset), "--out",
                 str(tmp_path), "--size", "32", "--units", "2", "--per-unit", "2", "--maps", "2", "--attention",
                 "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "draws the attention of clips" in err and "holds images" in err


@pytest.mark.gpu
def test_clip_attention_on_cuda_matches_cpu():
    vit = tiny_video_vit()
    clips = torch.randn(2, 3, 4, 48, 48)
    cpu = clip_attention(vit, clips)
    gpu = clip_attention(copy.deepcopy(vit).cuda(), clips.cuda())
    torch.testing.assert_close(gpu, cpu, rtol=0, atol=1e-4)
