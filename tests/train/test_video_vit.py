"""The spatiotemporal ViT against a float64 transcription of its reference, and the video-models zoo.

The reference is eminorhan/video-models ``models_vit.py`` + ``util/video_vit.py`` (eminorhan/mae_st's, a copy of
facebookresearch/mae_st with CLS pooling and patch 14 for ViT-H), transcribed below as plain float64 functions
of a state dict written in exactly its key layout (names and shapes made here, not read from headcam's model),
so a renamed or reshaped parameter fails the strict load and a changed operation fails the comparison.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from torch.nn import functional as F

from headcam.console import UsageError
from headcam.eval.models import load_model
from headcam.train import zoo
from headcam.train.archs import ARCHS, VIDEO_VITS, check_input_size
from headcam.train.backbones import build_backbone


def reference_state(width: int, depth: int, patch: int, t_patch: int, frames: int, grid: int, *,
                    n_classes: int | None = None, decoder: int = 0, gen: torch.Generator | None = None,
                    device: str = "cpu") -> dict[str, torch.Tensor]:
    """Random tensors under the reference's names and shapes: models_vit.VisionTransformer (sep_pos_embed,
    cls_embed; ``head.*`` when fine-tuned to ``n_classes``), plus models_mae's decoder (``decoder`` > 0: its
    width; depth 4, pred_t_dim = frames) for an ``mae_*`` file."""
    def r(*shape: int) -> torch.Tensor:
        if device == "meta":
            return torch.empty(shape, device="meta")
        return torch.randn(shape, generator=gen, dtype=torch.float64) * 0.2

    def m(out: int, inp: int) -> torch.Tensor:  # a weight matrix of about unit gain: float32 stays close
        return r(out, inp) * 5 / math.sqrt(inp)

    def blocks(prefix: str, d: int, n: int) -> dict[str, torch.Tensor]:
        out = {}
        for i in range(n):
            b = f"{prefix}.{i}."
            out.update({b + "norm1.weight": 1 + r(d), b + "norm1.bias": r(d)})
            for name in ("q", "k", "v", "proj"):
                out.update({f"{b}attn.{name}.weight": m(d, d), f"{b}attn.{name}.bias": r(d)})
            out.update({b + "norm2.weight": 1 + r(d), b + "norm2.bias": r(d), b + "mlp.fc1.weight": m(4 * d, d),
                        b + "mlp.fc1.bias": r(4 * d), b + "mlp.fc2.weight": m(d, 4 * d), b + "mlp.fc2.bias": r(d)})
        return out

    t = frames // t_patch
    state = {"cls_token": r(1, 1, width), "pos_embed_spatial": r(1, grid * grid, width),
             "pos_embed_temporal": r(1, t, width), "pos_embed_class": r(1, 1, width),
             "patch_embed.proj.weight": r(width, 3, t_patch, patch, patch), "patch_embed.proj.bias": r(width),
             **blocks("blocks", width, depth), "norm.weight": 1 + r(width), "norm.bias": r(width)}
    if n_classes:
        state.update({"head.weight": m(n_classes, width), "head.bias": r(n_classes)})
    if decoder:
        state.update({"decoder_cls_token": r(1, 1, decoder), "decoder_embed.weight": m(decoder, width),
                      "decoder_embed.bias": r(decoder), "mask_token": r(1, 1, decoder),
                      "decoder_pos_embed_spatial": r(1, grid * grid, decoder),
                      "decoder_pos_embed_temporal": r(1, t, decoder), "decoder_pos_embed_class": r(1, 1, decoder),
                      **blocks("decoder_blocks", decoder, 4), "decoder_norm.weight": 1 + r(decoder),
                      "decoder_norm.bias": r(decoder), "decoder_pred.weight": m(t_patch * patch * patch * 3, decoder),
                      "decoder_pred.bias": r(t_patch * patch * patch * 3)})
    return state


def _layer_norm(x: torch.Tensor, s: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], s[name + ".weight"], s[name + ".bias"], eps=1e-6)


def _linear(x: torch.Tensor, s: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return x @ s[name + ".weight"].T + s[name + ".bias"]


def reference_interpolate(pos: torch.Tensor, h: int, w: int, patch: int) -> torch.Tensor:
    """eminorhan/mae_st models_vit.interpolate_pos_encoding(C, L, w, h) (its ``w`` is the clip's 4th axis)."""
    n, c = pos.shape[1], pos.shape[2]
    if h // patch * (w // patch) == n and h == w:
        return pos
    h0, w0 = h // patch + 0.1, w // patch + 0.1
    side = math.sqrt(n)
    table = pos.reshape(1, int(side), int(side), c).permute(0, 3, 1, 2)
    table = F.interpolate(table, scale_factor=(h0 / side, w0 / side), mode="bicubic")
    return table.permute(0, 2, 3, 1).reshape(1, -1, c)


def reference_features(s: dict[str, torch.Tensor], x: torch.Tensor, heads: int, patch: int) -> torch.Tensor:
    """VisionTransformer.forward with num_classes=None (head = Identity, dropout off in eval): PatchEmbed's
    Conv3d + einsum("ncts->ntsc"), CLS, separable positions, the blocks (q/k/v attention with an explicit
    softmax), CLS token, final norm. Float64 throughout."""
    w3 = s["patch_embed.proj.weight"]
    tok = F.conv3d(x, w3, s["patch_embed.proj.bias"], stride=w3.shape[2:]).flatten(3)
    tok = torch.einsum("ncts->ntsc", tok)
    n, t, hw, c = tok.shape
    tok = tok.reshape(n, t * hw, c)
    tok = torch.cat([s["cls_token"].expand(n, -1, -1), tok], dim=1)
    spatial = reference_interpolate(s["pos_embed_spatial"], x.shape[3], x.shape[4], patch)
    pos = spatial.repeat(1, t, 1) + torch.repeat_interleave(s["pos_embed_temporal"], spatial.shape[1], dim=1)
    tok = tok + torch.cat([s["pos_embed_class"].expand(1, -1, -1), pos], dim=1)
    for i in range(sum(k.endswith("norm1.weight") and k.startswith("blocks.") for k in s)):
        b = f"blocks.{i}."
        y = _layer_norm(tok, s, b + "norm1")
        q, k, v = (_linear(y, s, f"{b}attn.{p}").reshape(n, -1, heads, c // heads).permute(0, 2, 1, 3)
                   for p in "qkv")
        attn = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(dim=-1)
        tok = tok + _linear((attn @ v).transpose(1, 2).reshape(n, -1, c), s, b + "attn.proj")
        y = _layer_norm(tok, s, b + "norm2")
        tok = tok + _linear(F.gelu(_linear(y, s, b + "mlp.fc1")), s, b + "mlp.fc2")
    return _layer_norm(tok[:, 0], s, "norm")


def _tiny() -> torch.nn.Module:
    """vit_tiny_patch16_st's layout at width 48 and depth 2: the maths, not the size, is under test here."""
    from headcam.train.video_vit import VideoViT

    return VideoViT(patch=16, width=48, depth=2, heads=3, num_frames=4).eval()


def test_names_are_listed_torch_free_and_built():
    assert {f"vit_{s}_patch{p}_st" for s in ("tiny", "small", "base", "large", "huge") for p in (14, 16)} \
        == set(VIDEO_VITS) and set(VIDEO_VITS) <= set(ARCHS)
    net, dim = build_backbone("vit_small_patch14_st", num_frames=4)
    assert dim == 384 and net(torch.randn(1, 3, 4, 28, 28)).shape == (1, 384)
    with pytest.raises(UsageError, match="14 px patches"):
        check_input_size("vit_small_patch14_st", 10)


@pytest.mark.parametrize("side", [224, 48])
def test_features_equal_the_reference_transcription(side):
    """At the stored 14 x 14 grid and at 48 px (3 x 3: positions resampled as eminorhan/mae_st's
    interpolate_pos_encoding), in float64 and in float32."""
    gen = torch.Generator().manual_seed(0)
    state = reference_state(48, 2, 16, 2, 4, 14, gen=gen)
    net = _tiny().double()
    net.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 4, side, side, generator=gen, dtype=torch.float64)
    want = reference_features(state, x, heads=3, patch=16)
    with torch.no_grad():
        got64 = net(x)
        got32 = net.float()(x.float())
    assert got64.shape == (2, 48)
    assert (got64 - want).abs().max() <= 1e-10
    assert (got32.double() - want).abs().max() <= 1e-5
    assert (want[0] - want[1]).abs().max() > 0.1  # the feature depends on the input


def test_an_image_is_repeated_over_all_frames():
    """engine_finetune_on_image.py: images.unsqueeze(2).repeat((1, 1, num_frames, 1, 1))."""
    gen = torch.Generator().manual_seed(1)
    state = reference_state(48, 2, 16, 2, 4, 14, gen=gen)
    net = _tiny().double()
    net.load_state_dict(state, strict=True)
    img = torch.randn(2, 3, 32, 32, generator=gen, dtype=torch.float64)
    want = reference_features(state, img.unsqueeze(2).repeat((1, 1, 4, 1, 1)), heads=3, patch=16)
    with torch.no_grad():
        assert (net(img) - want).abs().max() <= 1e-10
    with pytest.raises(UsageError, match=r"\(B, C, 4, H, W\) clips"):
        net(torch.randn(1, 3, 6, 32, 32, dtype=torch.float64))


def test_vit_h14_shapes_on_the_meta_device():
    """The zoo's ViT-H/14 (16 frames, tubelets of 2, 224 px) built and recognised without allocating it."""
    with torch.device("meta"):
        net, dim = build_backbone("vit_huge_patch14_st")
    ref = reference_state(1280, 32, 14, 2, 16, 16, device="meta")
    assert dim == 1280 and all(p.is_meta for p in net.parameters())
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == {k: tuple(v.shape) for k, v in ref.items()}
    assert 630e6 < sum(p.numel() for p in net.parameters()) < 635e6  # ViT-H: 632 M
    mae = reference_state(1280, 32, 14, 2, 16, 16, decoder=512, device="meta")
    found = zoo.recognise({"model": mae, "epoch": 1}, "mae_say_none.pth")
    assert found.arch == "vit_huge_patch14_st" and found.source["format"] == "video-models-mae"
    assert found.source["num_frames"] == 16 and set(found.state) == set(ref)


def _write(path, model: dict[str, torch.Tensor], **extra) -> None:
    args = argparse.Namespace(model="vit_huge_patch14", num_frames=4, t_patch_size=2)
    torch.save({"model": {k: v.float() for k, v in model.items()}, "optimizer": {}, "epoch": 3,
                "scaler": {"scale": 65536.0}, "args": args, **extra}, path)


@pytest.mark.parametrize(("kind", "layout"), [("mae", "video-models-mae"), ("vit", "video-models-vit")])
def test_zoo_files_load_unchanged_with_the_reference_features(tmp_path, kind, layout):
    """``*_none.pth`` (mae_*: encoder + decoder; the encoder is the trunk) and a fine-tuned ``*_ssv2-50shot.pth``
    (vit_*: the trunk plus a 174-way head, dropped), read with safe loading, give the reference's features."""
    gen = torch.Generator().manual_seed(2)
    state = reference_state(192, 12, 16, 2, 4, 14, gen=gen, decoder=64 if kind == "mae" else 0,
                            n_classes=174 if kind == "vit" else None)
    path = tmp_path / f"s_{'none' if kind == 'mae' else 'ssv2-50shot'}.pth"
    _write(path, state)
    model = load_model(str(path))
    assert model.arch == "vit_tiny_patch16_st" and model.source["format"] == layout and model.feat_dim == 192
    x = torch.randn(2, 3, 4, 32, 32, generator=gen)
    want = reference_features({k: v.float().double() for k, v in state.items()}, x.double(), heads=3, patch=16)
    with torch.no_grad():
        got32 = model.trunk(x)
        got64 = model.trunk.double()(x.double())
    assert (got32.double() - want).abs().max() <= 1e-5 and (got64 - want).abs().max() <= 1e-10
    assert model.source.get("n_out") == (174 if kind == "vit" else None)


def test_wrong_or_partial_files_are_one_line_errors(tmp_path):
    gen = torch.Generator().manual_seed(3)
    state = reference_state(192, 12, 16, 2, 4, 14, gen=gen)
    partial = tmp_path / "partial.pth"
    _write(partial, {k: v for k, v in state.items() if not k.startswith("blocks.1.attn.k")})
    with pytest.raises(UsageError) as e:
        load_model(str(partial))
    assert "\n" not in str(e.value) and "partial.pth" in str(e.value)
    odd = tmp_path / "odd_width.pth"  # 200 wide: no vit_*_st has it
    _write(odd, reference_state(200, 12, 16, 2, 4, 14, gen=gen))
    with pytest.raises(UsageError, match="unknown architecture") as e:
        load_model(str(odd))
    assert "\n" not in str(e.value)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(UsageError, match="not a torch checkpoint file"):
        load_model(str(text))


def test_headcam_export_takes_a_zoo_file_and_its_card_lines_load_it(tmp_path, monkeypatch):
    """timm has no tubelet ViT: the card's headcam lines load the folder, and so does --model local-dir:."""
    from headcam.train.export import main as export_main

    gen = torch.Generator().manual_seed(4)
    path = tmp_path / "s_none.pth"
    _write(path, reference_state(192, 12, 16, 2, 4, 14, gen=gen, decoder=64))
    out = tmp_path / "export"
    assert export_main([str(path), str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_st" and config["headcam"]["arch"] == "vit_tiny_patch16_st"
    card = (out / "README.md").read_text()
    lines = card.split("```python\n")[1].split("```")[0].splitlines()
    assert 'build_backbone("vit_tiny_patch16_st", num_frames=4, t_patch_size=2)' in lines[1]
    x = torch.randn(2, 3, 4, 32, 32, generator=gen)
    monkeypatch.chdir(out)
    scope: dict = {}
    exec("\n".join(lines[:3]), scope)  # the card's own lines, run in the folder
    with torch.no_grad():
        want = load_model(str(path)).trunk(x)
        assert (scope["model"](x) - want).abs().max() <= 1e-6
        assert (load_model(f"local-dir:{out}").trunk(x) - want).abs().max() <= 1e-6
