"""analyze --attention: DINO's last-block CLS self-attention and its thresholded masks (visualize_attention.py)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from PIL import Image

from headcam.eval.attention import (
    attention_weights,
    cls_attention_maps,
    last_selfattention,
    threshold_masks,
    to_pixels,
    vit_of,
)
from headcam.eval.cli import main
from headcam.train.backbones import VitProbeFeatures, build_vit


def tiny_vit():
    """vit_mini_patch4 (4 heads, 6 blocks) as DINO initialises it, biases and norms moved off their init so no
    term of the attention is trivially zero or one, and the last block's q, k and v scaled up so it attends
    unevenly."""
    torch.manual_seed(0)
    vit = build_vit("vit_mini_patch4", img_size=32, init="dino").eval()
    with torch.no_grad():
        for name, p in vit.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
        vit.blocks[-1].attn.qkv.weight.mul_(10)  # DINO's N(0, 0.02) init attends almost uniformly
    return vit


def dino_last_selfattention_float64(vit, images: torch.Tensor) -> torch.Tensor:
    """facebookresearch/dino ``vision_transformer.py`` in float64: ``get_last_selfattention`` runs the tokens
    through every block but the last, then the last block's ``Attention.forward`` on ``norm1(x)``:
    ``qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)``,
    ``attn = (q @ k.transpose(-2, -1)) * self.scale``, ``attn = attn.softmax(dim=-1)``."""
    vit = copy.deepcopy(vit).double()
    with torch.no_grad():
        x = vit.norm_pre(vit._pos_embed(vit.patch_embed(images.double())))  # prepare_tokens
        for blk in vit.blocks[:-1]:
            x = blk(x)
        blk = vit.blocks[-1]
        x = blk.norm1(x)
        b, n, c = x.shape
        heads = blk.attn.num_heads
        qkv = torch.nn.functional.linear(x, blk.attn.qkv.weight, blk.attn.qkv.bias)
        qkv = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        attn = (q @ k.transpose(-2, -1)) * (c // heads) ** -0.5
        return attn.softmax(dim=-1)


def dino_threshold(attentions: torch.Tensor, threshold: float) -> torch.Tensor:
    """visualize_attention.py's thresholding of ``attentions`` (nh x patches), line for line."""
    nh = attentions.shape[0]
    val, idx = torch.sort(attentions)
    val /= torch.sum(val, dim=1, keepdim=True)
    cumval = torch.cumsum(val, dim=1)
    th_attn = cumval > (1 - threshold)
    idx2 = torch.argsort(idx)
    for head in range(nh):
        th_attn[head] = th_attn[head][idx2[head]]
    return th_attn


def test_last_selfattention_is_dinos_in_float64():
    vit = tiny_vit()
    images = torch.randn(3, 3, 32, 32)
    ours = last_selfattention(vit, images)
    ref = dino_last_selfattention_float64(vit, images)
    assert ours.shape == (3, 4, 65, 65) and ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, rtol=0, atol=1e-5)  # measured 1.7e-6
    torch.testing.assert_close(ours.sum(-1), torch.ones(3, 4, 65))
    assert ref[:, :, 0, 1:].std() > 0.01  # the CLS row is not uniform: the comparison can fail
    # probe-feature wrappers are looked through; a CNN has no ViT
    assert vit_of(VitProbeFeatures(vit)) is vit and vit_of(torch.nn.Conv2d(3, 3, 1)) is None


def test_weights_reproduce_the_attention_modules_own_output():
    """attention @ v -> proj is what timm's fused (scaled_dot_product_attention) module returns."""
    vit = tiny_vit()
    attn = vit.blocks[-1].attn
    x = torch.randn(2, 17, vit.embed_dim)
    with torch.no_grad():
        w = attention_weights(attn, x)
        v = attn.qkv(x).reshape(2, 17, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)[2]
        rebuilt = attn.proj((w @ v).transpose(1, 2).reshape(2, 17, vit.embed_dim))
        torch.testing.assert_close(rebuilt, attn(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threshold", [0.6, 0.1, 0.35, 0.9, 1.0])
def test_threshold_masks_are_dinos(threshold):
    torch.manual_seed(1)
    attn = (3 * torch.randn(6, 196)).softmax(dim=-1)
    ours = threshold_masks(attn, threshold)
    assert ours.dtype == torch.bool
    assert torch.equal(ours, dino_threshold(attn.clone(), threshold))
    # the fewest patches holding the mass: the kept set holds it, dropping its weakest patch does not
    norm = attn / attn.sum(-1, keepdim=True)
    kept_mass = (norm * ours).sum(-1)
    weakest = torch.where(ours, norm, torch.inf).min(-1).values
    assert torch.all(kept_mass >= threshold - 1e-6) and torch.all(kept_mass - weakest < threshold + 1e-6)


def test_threshold_mask_by_hand_and_nearest_upsampling():
    # sorted 0.1 0.15 0.25 0.5 -> cumulative 0.1 0.25 0.5 1.0; > 0.4 keeps 0.25 and 0.5
    mask = threshold_masks(torch.tensor([[0.1, 0.5, 0.15, 0.25]]), 0.6)
    assert mask.tolist() == [[False, True, False, True]]
    up = to_pixels(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), 3)
    assert up.shape == (6, 6) and (up[:3, 3:] == 2).all() and (up[3:, :3] == 3).all()


def test_maps_on_the_floored_patch_grid():
    vit = tiny_vit()
    images = torch.randn(2, 3, 34, 35)
    maps = cls_attention_maps(vit, images, 0.6)  # 8 x 8 patches of 4 px, the remainders dropped as DINO crops
    cropped = last_selfattention(vit, images[..., :32, :32])[:, :, 0, 1:].reshape(2, 4, 8, 8)
    assert len(maps) == 2
    for i, m in enumerate(maps):
        assert m.heads.shape == (4, 8, 8) and m.masks.shape == (4, 8, 8) and m.mean_mask.shape == (8, 8)
        torch.testing.assert_close(m.heads, cropped[i])
        torch.testing.assert_close(m.mean, m.heads.mean(0))
        assert torch.equal(m.masks, threshold_masks(m.heads.flatten(1), 0.6).view(4, 8, 8))
        assert torch.equal(m.mean_mask, threshold_masks(m.mean.flatten(), 0.6).view(8, 8))


def test_analyze_attention_writes_grids_named_in_report(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "ana"
    code = main(["analyze", "--model", "random:vit_mini_patch4", "--data", str(tiny_dataset), "--out", str(out),
                 "--size", "32", "--units", "2", "--per-unit", "2", "--maps", "2", "--attention",
                 "--threshold", "0.5", "--no-cache"])
    assert code == 0 and "2 self-attention grids (threshold 0.5)" in capsys.readouterr().out
    sa = json.loads((out / "analysis.json").read_text())["self_attention"]
    assert sa["heads"] == 4 and sa["patch"] == 4 and sa["grid"] == [8, 8] and sa["threshold"] == 0.5
    assert len(sa["grids"]) == 2
    report = (out / "report.md").read_text()
    for path in sa["grids"]:
        assert f"]({path})" in report
        with Image.open(out / path) as im:
            im.verify()
    with Image.open(out / sa["grids"][0]) as im:
        assert im.size[0] > 6 * im.size[1] // 3  # image + 4 heads + mean side by side, two rows
    assert "self_attention/" not in report.split("## Self-attention")[0]


def test_attention_on_a_cnn_is_one_line(tiny_dataset, tmp_path, capsys):
    args = ["analyze", "--data", str(tiny_dataset), "--out", str(tmp_path / "a"), "--size", "32", "--no-cache"]
    assert main([*args, "--model", "random:resnet18", "--attention"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--attention needs a ViT" in err and "resnet18" in err
    assert not (tmp_path / "a" / "csi_hist.png").exists()
    assert main([*args, "--model", "random:vit_mini_patch4", "--threshold", "0.6"]) == 2
    assert "add --attention" in capsys.readouterr().err
    assert main([*args, "--model", "random:vit_mini_patch4", "--attention", "--threshold", "1.5"]) == 2
    assert "(0, 1]" in capsys.readouterr().err
