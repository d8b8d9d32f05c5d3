"""Backbones: torchvision ResNets / MobileNet and timm ViTs, classifier removed, feature size known.

``build_backbone`` is also what ``headcam-eval`` uses to rebuild a trunk from a checkpoint, so
the set of names here is the set of architectures a checkpoint may name.

ViTs (SPEC §10) are timm ``VisionTransformer`` s with timm's parameter names, which are also the
names in the DINO and MAE checkpoints of the silicon-menagerie zoo: qkv bias, LayerNorm eps 1e-6,
MLP ratio 4, built for 224 px with position embeddings interpolated (bicubic) for other input
sizes on the fly, and no classifier, so the trunk returns the CLS token after the final norm.

A side that is not whole patches is floored, as the stride-p convolution of DINO's ``PatchEmbed`` does
(``vision_transformer.py``: a 96 px local crop of a ViT-B/14 gives 6 x 6 tokens, the last 12 px dropped);
timm's ``PatchEmbed`` asserts instead. The trunk of a ``dino`` run starts as DINO's ``VisionTransformer``
initialises it (:func:`dino_init`); timm's init differs in one tensor, ``cls_token`` N(0, 1e-6).

The interpolation is the one of the reference the weights come from (``pos_interp``), not timm's:
timm's ``resample_abs_pos_embed`` antialiases (and its antialiased bicubic is Keys a = -0.5, not
PyTorch's a = -0.75), which moves a 14 -> 6 grid by up to ~5 % of the embedding's range.

- ``dino``: facebookresearch/dino ``vision_transformer.py`` ``interpolate_pos_encoding`` (eminorhan/dino
  keeps it unchanged): bicubic with ``scale_factor = (side + 0.1) / stored side``, no antialias, so the
  sampling positions follow the +0.1 scale, not the output size. DINO-trained and DINO-zoo ViTs.
- ``mae``: facebookresearch/mae ``util/pos_embed.py`` ``interpolate_pos_embed``: bicubic to ``size=``,
  ``align_corners=False``, no antialias. MAE-trained and MAE-zoo ViTs (MAE fine-tuning resamples the
  fixed sin-cos table this way too; it never recomputes it).
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torchvision
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.nn import functional as F

from headcam.console import UsageError
from headcam.train.archs import (  # noqa: F401 (re-exported)
    ARCHS,
    CLIP_FRAMES,
    CNN_ARCHS,
    TUBELET_FRAMES,
    VIDEO_VITS,
    VITS,
    VitShape,
    check_input_size,
)


def _strip_head(model: nn.Module) -> nn.Module:
    if hasattr(model, "fc"):
        model.fc = nn.Identity()
    elif hasattr(model, "classifier"):
        model.classifier = nn.Identity()
    return model


def apply_small_stem(model: nn.Module) -> nn.Module:
    """CIFAR-style stem for small images: 3x3 stride-1 first conv, no max-pool (SimCLR on CIFAR-10)."""
    if not hasattr(model, "conv1"):
        raise UsageError("small_stem is only defined for ResNet-family backbones")
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


#: How a ViT's position embeddings are resampled to another grid (module docstring), by reference.
POS_INTERPS = ("dino", "mae")


def pos_interp_for(origin: str | None) -> str:
    """The resampling of a ViT that came from ``origin`` (a headcam method or a published layout): MAE's
    for ``mae``, DINO's for everything else."""
    return "mae" if origin == "mae" else "dino"


def _check_pos_interp(how: str) -> None:
    if how not in POS_INTERPS:
        raise UsageError(f"pos_interp '{how}': use one of {', '.join(POS_INTERPS)}")


def mae_init_(module: nn.Module) -> None:
    """MAE's ``_init_weights`` over every submodule (``models_mae.py``, and mae_st's copy): each Linear
    xavier-uniform with zero bias, each LayerNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resample_pos_embed(pos: torch.Tensor, grid: tuple[int, int], how: str, prefix: int = 1) -> torch.Tensor:
    """``pos`` (1, prefix + S·S, D) on its stored square S x S grid, resampled to ``grid`` (H, W) the way
    reference ``how`` does (see the module docstring); the prefix (CLS) rows are kept as they are."""
    _check_pos_interp(how)
    side = math.isqrt(pos.shape[1] - prefix)
    if tuple(grid) == (side, side):
        return pos
    head, table = pos[:, :prefix], pos[:, prefix:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    if how == "dino":
        table = F.interpolate(table, scale_factor=((grid[0] + 0.1) / side, (grid[1] + 0.1) / side), mode="bicubic")
    else:
        table = F.interpolate(table, size=tuple(grid), mode="bicubic", align_corners=False)
    return torch.cat([head, table.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])], dim=1)


class FlooredPatchEmbed(PatchEmbed):
    """timm's ``PatchEmbed`` that drops the right and bottom remainder of a side that is not whole patches, as
    DINO's stride-p ``nn.Conv2d`` does (timm asserts); a side smaller than one patch is refused in one line."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (ph, pw), (h, w) = self.patch_size, x.shape[-2:]
        if h < ph or w < pw:
            raise UsageError(f"a {h}x{w} px view is smaller than one {ph}x{pw} px patch of the ViT")
        return super().forward(x[..., : h - h % ph, : w - w % pw])


class ViT(VisionTransformer):
    """timm's ViT (same parameter names, same forward) whose position embeddings are resampled by
    :func:`resample_pos_embed` with ``pos_interp`` instead of timm's antialiased resample, and whose patch
    embedding floors a side that is not whole patches (:class:`FlooredPatchEmbed`). ``pos_interp`` is an
    attribute, not state: it follows from where the weights came from (:func:`pos_interp_for`)."""

    def __init__(self, *, pos_interp: str = "dino", **kwargs):
        super().__init__(embed_layer=FlooredPatchEmbed, **kwargs)
        _check_pos_interp(pos_interp)
        self.pos_interp = pos_interp

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        # replaces timm 1.0's hook of the same name (pinned in pyproject): x is (B, H, W, C) because the ViT
        # is built with dynamic_img_size; one CLS token, no register tokens, position rows include the CLS
        b, h, w, c = x.shape
        pos = resample_pos_embed(self.pos_embed, (h, w), self.pos_interp)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x.reshape(b, h * w, c)], dim=1)
        return self.pos_drop(x + pos)


def _dino_init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.zeros_(m.bias)
        nn.init.ones_(m.weight)


@torch.no_grad()
def dino_init(vit: VisionTransformer) -> VisionTransformer:
    """``vit`` re-initialised as DINO's ``VisionTransformer.__init__`` does (facebookresearch/dino and eminorhan/dino
    ``vision_transformer.py``, ``_init_weights``), in its order: ``pos_embed`` and ``cls_token`` trunc-normal
    0.02, then every Linear trunc-normal 0.02 with zero bias and every LayerNorm 1 / 0; the patch convolution
    keeps PyTorch's default. timm's ``trunc_normal_`` is DINO's (inverse-CDF, cut at +-2 absolute) draw for draw;
    torch's own now samples by rejection, the same distribution from other draws."""
    trunc_normal_(vit.pos_embed, std=0.02)
    trunc_normal_(vit.cls_token, std=0.02)
    vit.apply(_dino_init_weights)
    return vit


def build_vit(arch: str, drop_path: float = 0.0, img_size: int = 224, pos_interp: str = "dino",
              init: str = "timm") -> ViT:
    """The ViT ``arch`` (see :data:`VITS`); ``img_size`` only sets the stored position-embedding grid;
    ``pos_interp`` how that grid is resampled for other input sides (module docstring); ``init`` ``timm``
    (timm's) or ``dino`` (:func:`dino_init`)."""
    if init not in ("timm", "dino"):
        raise ValueError(f"ViT init '{init}': timm or dino")
    v = VITS[arch]
    vit = ViT(img_size=img_size, patch_size=v.patch, embed_dim=v.width, depth=v.depth, num_heads=v.heads,
              mlp_ratio=4.0, qkv_bias=True, num_classes=0, global_pool="token",
              norm_layer=partial(nn.LayerNorm, eps=1e-6), drop_path_rate=drop_path, dynamic_img_size=True,
              pos_interp=pos_interp)
    return dino_init(vit) if init == "dino" else vit


class VitProbeFeatures(nn.Module):
    """DINO's linear-probe features of a ViT: the final-norm CLS token of each of the last ``blocks`` blocks,
    concatenated, plus (``avgpool``) the mean of the last block's patch tokens; ``blocks=1`` without
    ``avgpool`` is the plain CLS feature. Output width: ``width · (blocks + avgpool)``."""

    def __init__(self, vit: VisionTransformer, blocks: int = 4, avgpool: bool = True):
        super().__init__()
        if not 1 <= blocks <= len(vit.blocks):
            raise UsageError(f"the ViT has {len(vit.blocks)} blocks; cannot take the last {blocks}")
        self.vit, self.blocks, self.avgpool = vit, blocks, avgpool
        self.dim = vit.embed_dim * (blocks + int(avgpool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = self.vit.get_intermediate_layers(x, n=self.blocks, return_prefix_tokens=True, norm=True)
        feats = [prefix[:, 0] for _, prefix in layers]
        if self.avgpool:
            feats.append(layers[-1][0].mean(dim=1))
        return torch.cat(feats, dim=-1)


def parse_vit_features(text: str) -> tuple[int, bool]:
    """``cls`` -> (1, False); ``lastN`` -> (N, False); ``lastN+avgpool`` -> (N, True). DINO's linear eval reads
    last4 (ViT-S) and last1+avgpool (ViT-B) (configs/REFERENCES.md, "DINO linear evaluation")."""
    head, _, tail = text.partition("+")
    if head == "cls":
        blocks = 1
    elif head.startswith("last") and head[4:].isdigit() and int(head[4:]) >= 1:
        blocks = int(head[4:])
    else:
        blocks = 0
    if blocks == 0 or tail not in ("", "avgpool"):
        raise UsageError(f"--vit-features '{text}': use cls, lastN or lastN+avgpool (e.g. last4+avgpool)")
    return blocks, tail == "avgpool"


def build_backbone(arch: str, small_stem: bool = False, drop_path: float = 0.0, pos_interp: str = "",
                   method: str | None = None, num_frames: int = CLIP_FRAMES, t_patch_size: int = TUBELET_FRAMES,
                   zero_init_residual: bool = False) -> tuple[nn.Module, int]:
    """A randomly initialised trunk that maps B x 3 x H x W to B x D features, and D.

    ViTs only: ``drop_path`` (stochastic depth); ``pos_interp`` (``""``: :func:`pos_interp_for` ``method``);
    ``method``, the headcam method that trains the trunk (None: one that weights are loaded into), starts a
    ``dino`` ViT as DINO initialises it (:func:`dino_init`) and any other as timm does.

    ResNets only: ``zero_init_residual``, torchvision's switch that starts each residual block's last BatchNorm
    weight at 0 (VICReg's, Barlow Twins', SimCLR's and BYOL's trunks).

    Video ViTs (``vit_*_st``, :mod:`headcam.train.video_vit`) also take B x 3 x ``num_frames`` x H x W clips, in
    tubelets of ``t_patch_size`` frames; their positions resample as eminorhan/mae_st's (``pos_interp`` is not
    theirs to choose).
    """
    if arch not in ARCHS:
        raise UsageError(f"unknown backbone '{arch}'; supported: {', '.join(ARCHS)}")
    if arch in VIDEO_VITS:
        from headcam.train.video_vit import build_video_vit  # it imports this module's resampling

        if small_stem:
            raise UsageError("small_stem is only defined for ResNet-family backbones")
        return build_video_vit(arch, num_frames, t_patch_size, drop_path), VIDEO_VITS[arch].width
    if arch in VITS:
        if small_stem:
            raise UsageError("small_stem is only defined for ResNet-family backbones")
        vit = build_vit(arch, drop_path, pos_interp=pos_interp or pos_interp_for(method),
                        init="dino" if method == "dino" else "timm")
        return vit, VITS[arch].width
    resnet = {"zero_init_residual": True} if zero_init_residual else {}  # mobilenet_v2 has no such argument
    model = getattr(torchvision.models, arch)(weights=None, **resnet)
    if small_stem:
        model = apply_small_stem(model)
    model = _strip_head(model)
    with torch.no_grad():
        was_training = model.training
        model.eval()
        dim = model(torch.zeros(1, 3, 64, 64)).shape[1]
        model.train(was_training)
    return model, int(dim)
