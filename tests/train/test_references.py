"""Transcriptions of the reference code beside ours, in float64 (configs/REFERENCES.md, the rows that
cite this file).

- DINO's ``interpolate_pos_encoding`` (facebookresearch/dino ``vision_transformer.py``, unchanged in
  eminorhan/dino) and MAE's ``interpolate_pos_embed`` (facebookresearch/mae ``util/pos_embed.py``)
  against :func:`headcam.train.backbones.resample_pos_embed` and the ViT trunk's own resampling;
- MAE's ``initialize_weights`` / ``_init_weights`` and ``get_2d_sincos_pos_embed``
  (facebookresearch/mae ``models_mae.py``, ``util/pos_embed.py``) against :class:`headcam.train.mae.MAE`;
- DINO's ``PatchEmbed.forward`` / ``prepare_tokens`` on a side that is not whole patches (a ViT-B/14 at 96 px)
  and DINO's ViT initialisation (``VisionTransformer.__init__`` / ``_init_weights``, ``dino_utils.trunc_normal_``)
  against :class:`headcam.train.backbones.ViT` and :func:`headcam.train.backbones.dino_init`.
"""

from __future__ import annotations

import copy
import math
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from headcam.console import UsageError
from headcam.train.backbones import ViT, build_backbone, build_vit, dino_init, pos_interp_for, resample_pos_embed
from headcam.train.config import load_train_config
from headcam.train.mae import MAE, sincos_2d

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"

# --- transcriptions (bodies verbatim but for names, np.float -> np.float64 and the fake ``self``) -------------


def dino_interpolate_pos_encoding(self, x, w, h):
    """facebookresearch/dino vision_transformer.py:174-194 (eminorhan/dino vision_transformer.py:164-184)."""
    npatch = x.shape[1] - 1
    N = self.pos_embed.shape[1] - 1
    if npatch == N and w == h:
        return self.pos_embed
    class_pos_embed = self.pos_embed[:, 0]
    patch_pos_embed = self.pos_embed[:, 1:]
    dim = x.shape[-1]
    w0 = w // self.patch_embed.patch_size
    h0 = h // self.patch_embed.patch_size
    # we add a small number to avoid floating point error in the interpolation
    # see discussion at https://github.com/facebookresearch/dino/issues/8
    w0, h0 = w0 + 0.1, h0 + 0.1
    patch_pos_embed = nn.functional.interpolate(
        patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
        scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
        mode='bicubic',
    )
    assert int(w0) == patch_pos_embed.shape[-2] and int(h0) == patch_pos_embed.shape[-1]
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)


def mae_interpolate_pos_embed(model, checkpoint_model):
    """facebookresearch/mae util/pos_embed.py:75-96."""
    if 'pos_embed' in checkpoint_model:
        pos_embed_checkpoint = checkpoint_model['pos_embed']
        embedding_size = pos_embed_checkpoint.shape[-1]
        num_patches = model.patch_embed.num_patches
        num_extra_tokens = model.pos_embed.shape[-2] - num_patches
        # height (== width) for the checkpoint position embedding
        orig_size = int((pos_embed_checkpoint.shape[-2] - num_extra_tokens) ** 0.5)
        # height (== width) for the new position embedding
        new_size = int(num_patches ** 0.5)
        # class_token and dist_token are kept unchanged
        if orig_size != new_size:
            extra_tokens = pos_embed_checkpoint[:, :num_extra_tokens]
            # only the position tokens are interpolated
            pos_tokens = pos_embed_checkpoint[:, num_extra_tokens:]
            pos_tokens = pos_tokens.reshape(-1, orig_size, orig_size, embedding_size).permute(0, 3, 1, 2)
            pos_tokens = torch.nn.functional.interpolate(
                pos_tokens, size=(new_size, new_size), mode='bicubic', align_corners=False)
            pos_tokens = pos_tokens.permute(0, 2, 3, 1).flatten(1, 2)
            new_pos_embed = torch.cat((extra_tokens, pos_tokens), dim=1)
            checkpoint_model['pos_embed'] = new_pos_embed


def mae_get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token=False):
    """facebookresearch/mae util/pos_embed.py:20-67 (the three functions)."""
    def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
        assert embed_dim % 2 == 0
        omega = np.arange(embed_dim // 2, dtype=np.float64)  # np.float in the reference (removed from numpy)
        omega /= embed_dim / 2.
        omega = 1. / 10000**omega  # (D/2,)
        pos = pos.reshape(-1)  # (M,)
        out = np.einsum('m,d->md', pos, omega)  # (M, D/2), outer product
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)  # (M, D)

    def get_2d_sincos_pos_embed_from_grid(embed_dim, grid):
        assert embed_dim % 2 == 0
        emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])  # (H*W, D/2)
        emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])  # (H*W, D/2)
        return np.concatenate([emb_h, emb_w], axis=1)  # (H*W, D)

    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0)
    grid = grid.reshape([2, 1, grid_size, grid_size])
    pos_embed = get_2d_sincos_pos_embed_from_grid(embed_dim, grid)
    if cls_token:
        pos_embed = np.concatenate([np.zeros([1, embed_dim]), pos_embed], axis=0)
    return pos_embed


def mae_initialize_weights(self):
    """facebookresearch/mae models_mae.py:65-93 on a model with our attribute names (``self.trunk.*`` for
    the encoder's ``patch_embed`` / ``cls_token`` / ``pos_embed``; our decoder recomputes its positions)."""
    pos_embed = mae_get_2d_sincos_pos_embed(self.trunk.pos_embed.shape[-1],
                                            int(self.trunk.patch_embed.num_patches**.5), cls_token=True)
    self.trunk.pos_embed.data.copy_(torch.from_numpy(pos_embed).float().unsqueeze(0))
    w = self.trunk.patch_embed.proj.weight.data
    torch.nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
    torch.nn.init.normal_(self.trunk.cls_token, std=.02)
    torch.nn.init.normal_(self.mask_token, std=.02)

    def _init_weights(m):
        if isinstance(m, nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)
    self.apply(_init_weights)


def dino_patch_embed_forward(self, x):
    """eminorhan/dino vision_transformer.py:126-129 (PatchEmbed.forward; ``self.proj`` a stride-p Conv2d)."""
    B, C, H, W = x.shape
    x = self.proj(x).flatten(2).transpose(1, 2)
    return x


def dino_prepare_tokens(self, x):
    """eminorhan/dino vision_transformer.py:186-197 (VisionTransformer.prepare_tokens)."""
    B, nc, w, h = x.shape
    x = dino_patch_embed_forward(self.patch_embed, x)  # patch linear embedding

    # add the [CLS] token to the embed patch tokens
    cls_tokens = self.cls_token.expand(B, -1, -1)
    x = torch.cat((cls_tokens, x), dim=1)

    # add positional encoding to each token
    x = x + dino_interpolate_pos_encoding(self, x, w, h)

    return self.pos_drop(x)


def dino_trunc_normal_(tensor, mean=0., std=1., a=-2., b=2.):
    """eminorhan/dino dino_utils.py:465-500 (_no_grad_trunc_normal_ and trunc_normal_; the warning left out)."""
    def norm_cdf(x):
        return (1. + math.erf(x / math.sqrt(2.))) / 2.

    with torch.no_grad():
        l = norm_cdf((a - mean) / std)  # noqa: E741 (the reference's name)
        u = norm_cdf((b - mean) / std)
        tensor.uniform_(2 * l - 1, 2 * u - 1)
        tensor.erfinv_()
        tensor.mul_(std * math.sqrt(2.))
        tensor.add_(mean)
        tensor.clamp_(min=a, max=b)
        return tensor


def dino_vit_init(self):
    """eminorhan/dino vision_transformer.py:151-162 (= facebookresearch/dino :161-172) on a timm-named trunk."""
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            dino_trunc_normal_(m.weight, std=.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)
    dino_trunc_normal_(self.pos_embed, std=.02)
    dino_trunc_normal_(self.cls_token, std=.02)
    self.apply(_init_weights)


# --- position-embedding resampling ----------------------------------------------------------------------------


def _table(side: int = 14, dim: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 1 + side * side, dim, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("new", [6, 16])
def test_dino_resampling_equals_interpolate_pos_encoding(new):
    pos, patch = _table(), 16
    fake = SimpleNamespace(pos_embed=pos, patch_embed=SimpleNamespace(patch_size=patch))
    tokens = torch.zeros(1, 1 + new * new, pos.shape[-1], dtype=torch.float64)
    want = dino_interpolate_pos_encoding(fake, tokens, new * patch, new * patch)
    got = resample_pos_embed(pos, (new, new), "dino")
    assert got.shape == want.shape and torch.max(torch.abs(got - want)).item() <= 1e-12
    # timm's antialiased resample is not it (the test can fail): >1 % of the table's range apart
    timm = resample_abs_pos_embed(pos, new_size=[new, new], num_prefix_tokens=1)
    assert torch.max(torch.abs(timm - want)).item() > 0.01 * (pos.max() - pos.min()).item()


@pytest.mark.parametrize("new", [6, 16])
def test_mae_resampling_equals_interpolate_pos_embed(new):
    pos = _table()
    model = SimpleNamespace(patch_embed=SimpleNamespace(num_patches=new * new),
                            pos_embed=torch.zeros(1, 1 + new * new, pos.shape[-1]))
    ckpt = {"pos_embed": pos}
    mae_interpolate_pos_embed(model, ckpt)
    got = resample_pos_embed(pos, (new, new), "mae")
    assert got.shape == ckpt["pos_embed"].shape and torch.max(torch.abs(got - ckpt["pos_embed"])).item() <= 1e-12
    dino = resample_pos_embed(pos, (new, new), "dino")
    assert torch.max(torch.abs(dino - got)).item() > 1e-3  # the two references differ: the choice matters


def test_dino_local_crop_of_a_patch14_vit_keeps_six_by_six_positions():
    # 96 px at patch 14: DINO's +0.1 scale gives a 6x6 table from the 16x16 one (the 12 px remainder is dropped
    # by the stride-14 convolution in the reference)
    pos = _table(side=16)
    fake = SimpleNamespace(pos_embed=pos, patch_embed=SimpleNamespace(patch_size=14))
    want = dino_interpolate_pos_encoding(fake, torch.zeros(1, 37, pos.shape[-1]), 96, 96)
    assert torch.max(torch.abs(resample_pos_embed(pos, (6, 6), "dino") - want)).item() <= 1e-12


@pytest.mark.parametrize(("how", "side"), [("dino", 96), ("mae", 96), ("dino", 256), ("mae", 256)])
def test_the_vit_trunk_resamples_its_reference_way_when_fed_another_side(how, side):
    torch.manual_seed(0)
    vit = build_vit("vit_small_patch16", pos_interp=how).double().eval()
    with torch.no_grad():
        vit.pos_embed.normal_()
    x = torch.randn(2, 3, side, side, dtype=torch.float64)
    grid = side // 16
    fake = SimpleNamespace(pos_embed=vit.pos_embed.detach(), patch_embed=SimpleNamespace(patch_size=16,
                                                                                         num_patches=grid * grid))
    if how == "dino":
        pos = dino_interpolate_pos_encoding(fake, torch.zeros(1, 1 + grid * grid, 384), side, side)
    else:
        ckpt = {"pos_embed": vit.pos_embed.detach()}
        mae_interpolate_pos_embed(SimpleNamespace(patch_embed=fake.patch_embed,
                                                  pos_embed=torch.zeros(1, 1 + grid * grid, 384)), ckpt)
        pos = ckpt["pos_embed"]
    with torch.no_grad():
        patches = vit.patch_embed(x).reshape(2, grid * grid, 384)
        want = torch.cat([vit.cls_token.expand(2, -1, -1), patches], dim=1) + pos
        got = vit._pos_embed(vit.patch_embed(x))
    assert torch.max(torch.abs(got - want)).item() <= 1e-12
    assert vit(x).shape == (2, 384)


def test_pos_interp_follows_the_origin_and_refuses_unknown_names():
    assert pos_interp_for("mae") == "mae" and pos_interp_for("dino") == "dino" and pos_interp_for(None) == "dino"
    with pytest.raises(UsageError, match="pos_interp 'timm'"):
        build_vit("vit_small_patch16", pos_interp="timm")


def test_the_pos_interp_key_defaults_to_the_methods_reference_and_reaches_the_trunk():
    assert load_train_config(None, ["data=x", "method=dino", "arch=vit_small_patch16"]).pos_interp == ""
    assert load_train_config(None, ["data=x", "method=dino", "pos_interp=mae"]).pos_interp == "mae"
    with pytest.raises(UsageError, match="pos_interp='timm' is not one of: dino, mae"):
        load_train_config(None, ["data=x", "pos_interp=timm"])
    assert build_backbone("vit_small_patch16", method="mae")[0].pos_interp == "mae"
    assert build_backbone("vit_small_patch16", method="dino")[0].pos_interp == "dino"
    assert build_backbone("vit_small_patch16", pos_interp="mae", method="dino")[0].pos_interp == "mae"


def test_the_trainer_builds_the_trunk_with_the_configs_pos_interp_and_method(tiny_dataset, tmp_path, monkeypatch):
    from headcam.train import cli

    class Built(Exception):
        pass

    def build(*args, **kwargs):
        raise Built(args, kwargs)

    monkeypatch.setattr("headcam.train.trainer.build_backbone", build)
    with pytest.raises(Built) as e:
        cli.main([str(DEMO), f"data={tiny_dataset}", f"out={tmp_path / 'run'}", "method=dino",
                  "arch=vit_small_patch16", "size=64", "pos_interp=mae", "device=cpu", "workers=0"])
    args, kwargs = e.value.args
    assert args == ("vit_small_patch16", False, 0.0, "mae") and kwargs["method"] == "dino"


# --- sides that are not whole patches (ViT-B/14 at 96 px: DINO's local crops) ---------------------------------


def _dino_tokens_equal_ours(vit: ViT, side: int, tol: float) -> torch.Tensor:
    """Our tokens before the blocks at ``side`` against the transcription of DINO's ``prepare_tokens`` on the same
    weights; returns ours."""
    x = torch.randn(2, 3, side, side, dtype=vit.pos_embed.dtype)
    patch_embed = SimpleNamespace(proj=vit.patch_embed.proj, patch_size=vit.patch_embed.patch_size[0])
    fake = SimpleNamespace(pos_embed=vit.pos_embed, cls_token=vit.cls_token, pos_drop=vit.pos_drop,
                           patch_embed=patch_embed)
    with torch.no_grad():
        want = dino_prepare_tokens(fake, x)
        got = vit._pos_embed(vit.patch_embed(x))
    assert got.shape == want.shape and torch.max(torch.abs(got - want)).item() <= tol
    return got


def test_a_patch14_trunk_floors_a_96_px_view_to_six_by_six_tokens_as_dino_does():
    # a ViT-B/14-shaped trunk, narrow and shallow for float64 on a CPU: 96 = 6 x 14 + 12, the 12 px dropped
    torch.manual_seed(0)
    vit = ViT(img_size=224, patch_size=14, embed_dim=32, depth=1, num_heads=2, mlp_ratio=4.0, qkv_bias=True,
              num_classes=0, global_pool="token", norm_layer=partial(nn.LayerNorm, eps=1e-6), dynamic_img_size=True)
    vit = vit.double().eval()
    with torch.no_grad():
        vit.pos_embed.normal_()
    assert _dino_tokens_equal_ours(vit, 96, 1e-12).shape == (2, 1 + 6 * 6, 32)
    assert _dino_tokens_equal_ours(vit, 100, 1e-12).shape == (2, 1 + 7 * 7, 32)  # 2 px dropped
    assert _dino_tokens_equal_ours(vit, 224, 0.0).shape == (2, 1 + 16 * 16, 32)  # the stored grid: no resampling


def test_the_real_vit_base_patch14_takes_96_px_local_crops():
    torch.manual_seed(0)
    vit = build_vit("vit_base_patch14").eval()
    tokens = _dino_tokens_equal_ours(vit, 96, 1e-5)
    assert tokens.shape == (2, 37, 768)
    with torch.no_grad():
        assert vit(torch.randn(2, 3, 96, 96)).shape == (2, 768)
        assert vit.forward_features(torch.randn(1, 3, 96, 96)).shape == (1, 37, 768)


def test_a_side_smaller_than_one_patch_is_one_line():
    vit = build_vit("vit_small_patch16")
    with pytest.raises(UsageError, match="a 12x12 px view is smaller than one 16x16 px patch"):
        vit(torch.zeros(1, 3, 12, 12))
    with pytest.raises(UsageError, match="vit_small_patch16 cuts views into 16 px patches; a 12 px view"):
        load_train_config(None, ["data=x", "arch=vit_small_patch16", "size=12"])
    say = load_train_config(None, ["data=x", "method=dino", "arch=vit_base_patch14", "augment.local.n=8"])
    assert say.size == 224 and say.augment.local.n == 8  # 96 px local crops of a ViT-B/14 are allowed
    with pytest.raises(UsageError, match="MAE patchifies whole patches"):
        load_train_config(None, ["data=x", "method=mae", "arch=vit_base_patch14", "size=96"])


# --- DINO's ViT initialisation ---------------------------------------------------------------------------------


def _check_dino_init(vit: nn.Module) -> None:
    """The statistics of DINO's ``VisionTransformer`` init that another init would break."""
    linears = [m for m in vit.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4 * 12  # qkv, proj, fc1, fc2 per block; no head
    for m in linears:
        assert m.weight.std().item() == pytest.approx(0.02, rel=0.03) and torch.count_nonzero(m.bias) == 0
    for m in vit.modules():
        if isinstance(m, nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.count_nonzero(m.bias) == 0
    for token in (vit.cls_token, vit.pos_embed):  # a sample std of n draws is within 4/sqrt(2n)
        assert token.std().item() == pytest.approx(0.02, rel=4 / math.sqrt(2 * token.numel()))
    w = vit.patch_embed.proj.weight  # PyTorch's Conv2d default: U(+-1/sqrt(fan_in)), fan_in = 3 x 16 x 16
    bound = 1 / math.sqrt(3 * 16 * 16)
    assert 0.95 * bound <= w.abs().max().item() <= bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_a_dino_trained_vit_starts_as_dinos_vision_transformer():
    torch.manual_seed(0)
    ours = build_backbone("vit_small_patch16", method="dino")[0]
    _check_dino_init(ours)
    reference = copy.deepcopy(ours)
    torch.manual_seed(1)
    dino_vit_init(reference)
    _check_dino_init(reference)  # the transcription passes the same checks on the same shapes
    # draw for draw, in float64: dino_init is the transcription
    a, b = copy.deepcopy(ours).double(), copy.deepcopy(ours).double()
    torch.manual_seed(2)
    dino_init(a)
    torch.manual_seed(2)
    dino_vit_init(b)
    for (name, x), (_, y) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(x, y), name


def test_timms_vit_init_fails_the_dino_checks():
    torch.manual_seed(0)
    timm_init = build_backbone("vit_small_patch16")[0]  # a trunk that weights are loaded into: timm's init
    assert timm_init.cls_token.std().item() < 1e-5  # timm: N(0, 1e-6)
    with pytest.raises(AssertionError):
        _check_dino_init(timm_init)
    mae = build_backbone("vit_small_patch16", method="mae")[0]  # MAE re-initialises it (models_mae)
    assert mae.cls_token.std().item() < 1e-5


# --- MAE initialisation ---------------------------------------------------------------------------------------


def _xavier_bound(fan_in: int, fan_out: int) -> float:
    return math.sqrt(6.0 / (fan_in + fan_out))


def _check_mae_init(model: MAE) -> None:
    """The statistics of ``models_mae.initialize_weights`` that a different init would break."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4 * 12 + 4 * 1 + 2  # qkv, proj, fc1, fc2 per block; decoder_embed, decoder_pred
    for m in linears:
        bound = _xavier_bound(m.in_features, m.out_features)
        top = m.weight.abs().max().item()
        assert 0.95 * bound <= top <= bound, (m, top, bound)
        assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert torch.count_nonzero(m.bias) == 0
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.count_nonzero(m.bias) == 0
    w = model.trunk.patch_embed.proj.weight  # a Linear of fan_in C·p·p and fan_out width, not a conv's fans
    bound = _xavier_bound(3 * 16 * 16, 384)
    assert 0.95 * bound <= w.abs().max().item() <= bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    for token in (model.trunk.cls_token, model.mask_token):  # a sample std of n draws is within 4/sqrt(2n)
        assert token.std().item() == pytest.approx(0.02, rel=4 / math.sqrt(2 * token.numel()))


def _small_mae() -> MAE:
    return MAE(build_vit("vit_small_patch16"), decoder_width=64, decoder_depth=1, decoder_heads=4)


def test_mae_init_matches_models_mae_initialize_weights():
    torch.manual_seed(0)
    ours = _small_mae()
    _check_mae_init(ours)
    reference = copy.deepcopy(ours)
    torch.manual_seed(1)
    mae_initialize_weights(reference)
    _check_mae_init(reference)  # the transcription passes the same checks on the same shapes
    for (name, a), (_, b) in zip(ours.named_parameters(), reference.named_parameters(), strict=True):
        if a.numel() > 1000:
            assert a.std().item() == pytest.approx(b.std().item(), rel=0.05), name
    assert torch.equal(ours.trunk.pos_embed, reference.trunk.pos_embed)


def test_timms_vit_init_fails_those_checks():
    torch.manual_seed(0)
    model = _small_mae()
    fresh = build_vit("vit_small_patch16")  # timm's init: trunc-normal 0.02 Linears, conv-default patch embed
    model.trunk.load_state_dict({k: v for k, v in fresh.state_dict().items() if k != "pos_embed"}, strict=False)
    with pytest.raises(AssertionError):
        _check_mae_init(model)


def test_mae_fixed_positions_equal_get_2d_sincos_pos_embed():
    model = _small_mae()
    want = torch.from_numpy(mae_get_2d_sincos_pos_embed(384, 14, cls_token=True)).float().unsqueeze(0)
    assert torch.equal(model.trunk.pos_embed, want) and not model.trunk.pos_embed.requires_grad
    decoder = torch.from_numpy(mae_get_2d_sincos_pos_embed(64, 14, cls_token=True)).float().unsqueeze(0)
    assert torch.equal(sincos_2d(64, 14, 14), decoder)
    assert model.trunk.pos_interp == "mae"
