"""Spatiotemporal ViTs (``vit_*_st``): the video encoder of spatiotemporal MAE, built from timm's ``Block`` s.

Transcribed from facebookresearch/mae_st ``models_vit.py`` and ``util/video_vit.py`` as eminorhan/mae_st (and
its stand-alone copy eminorhan/video-models, whose checkpoints headcam loads) builds them:

- tubelets: ``patch_embed.proj`` is a ``Conv3d`` of kernel = stride = (``t_patch_size``, p, p), so a
  (B, 3, T, H, W) clip becomes T/t x H/p x W/p tokens, time-major;
- separable positions (``sep_pos_embed=True``): ``pos_embed_spatial`` (1, h·w, D) repeated over the t tubelet
  slots plus ``pos_embed_temporal`` (1, t, D) repeated over the h·w places; the CLS token (``cls_embed=True``)
  gets its own ``pos_embed_class`` (1, 1, D);
- blocks: pre-norm, LayerNorm eps 1e-6, MLP ratio 4, GELU, biases on ``q``, ``k``, ``v``: the reference keeps
  three separate projections (``attn.q``, ``attn.k``, ``attn.v``), so timm's ``Block`` is given that attention
  (:class:`SeparateQKVAttention`) instead of timm's fused ``qkv``, and every parameter name is the reference's:
  a video-models state dict loads with no renaming;
- pooling: eminorhan/mae_st's ``models_vit.VisionTransformer.forward`` (the code the zoo's ``vit_*`` models
  were fine-tuned with): the CLS token after the blocks, through the final ``norm``; that is :meth:`forward`'s
  (B, D) feature. (facebookresearch/mae_st's forward instead averages tokens ``1:`` and then norms.)

Inputs of another side: positions are resampled as eminorhan/mae_st's ``interpolate_pos_encoding`` does
(DINO's bicubic with the +0.1 scale, :func:`~headcam.train.backbones.resample_pos_embed`), and a side that is not
whole patches is floored (the strided convolution drops the remainder). The clip length must be ``num_frames``
(the reference's ``PatchEmbed`` asserts it). An image (B, 3, H, W) is repeated over all ``num_frames`` frames, as
eminorhan/mae_st evaluates video models on images (``engine_finetune_on_image.py``:
``images.unsqueeze(2).repeat((1, 1, num_frames, 1, 1))``).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn
from torch.nn import functional as F

from headcam.console import UsageError
from headcam.train.archs import CLIP_FRAMES, TUBELET_FRAMES, VIDEO_VITS
from headcam.train.backbones import mae_init_, resample_pos_embed


class SeparateQKVAttention(nn.Module):
    """Multi-head self-attention with the reference's three projections ``q``, ``k``, ``v`` and ``proj``
    (``util/video_vit.py``: ``Attention``), in the form timm's ``Block`` builds its ``attn_layer``; softmax
    attention through ``scaled_dot_product_attention`` as eminorhan/mae_st computes it. The other arguments timm's
    ``Block`` passes (``qk_norm``, ``scale_norm``, ``norm_layer``) are its defaults, off, and are not used."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, proj_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, **_block_defaults):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not a multiple of {num_heads} heads")
        if attn_drop:
            raise ValueError("the reference has no attention dropout (its Attention asserts attn_drop == 0)")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of (B, N, D) tokens as (B, heads, N, D / heads) each."""
        b, n, d = x.shape
        return tuple(f(x).reshape(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)
                     for f in (self.q, self.k, self.v))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        q, k, v = self.heads(x)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(x.shape)))


class TubeletEmbed(nn.Module):
    """(B, C, T, H, W) -> (B, T/t, h·w, D): one ``Conv3d`` over t x p x p tubelets (the reference's ``PatchEmbed``
    with its parameter name ``proj``); spatial remainders are dropped, a side under one patch is refused."""

    def __init__(self, patch: int, t_patch_size: int, dim: int, in_chans: int = 3):
        super().__init__()
        self.patch, self.t_patch_size = patch, t_patch_size
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=(t_patch_size, patch, patch),
                              stride=(t_patch_size, patch, patch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < self.patch or w < self.patch:
            raise UsageError(f"a {h}x{w} px view is smaller than one {self.patch}x{self.patch} px patch of the ViT")
        return self.proj(x).flatten(3).permute(0, 2, 3, 1)


def separable_positions(spatial: torch.Tensor, temporal: torch.Tensor, cls: torch.Tensor | None) -> torch.Tensor:
    """The reference's ``sep_pos_embed``: spatial (1, h·w, D) repeated over t + temporal (1, t, D) repeated over
    h·w, in (t, h, w) order, after the CLS position (1, 1, D) when given -> (1, [1 +] t·h·w, D)."""
    pos = spatial.repeat(1, temporal.shape[1], 1) + torch.repeat_interleave(temporal, spatial.shape[1], dim=1)
    return pos if cls is None else torch.cat([cls, pos], dim=1)


class VideoViT(nn.Module):
    """The spatiotemporal ViT (module docstring): (B, 3, T, H, W) clips or (B, 3, H, W) images -> (B, D)."""

    def __init__(self, *, patch: int, width: int, depth: int, heads: int, num_frames: int = CLIP_FRAMES,
                 t_patch_size: int = TUBELET_FRAMES, img_size: int = 224, drop_path: float = 0.0):
        super().__init__()
        if num_frames < t_patch_size or num_frames % t_patch_size:
            raise UsageError(f"num_frames {num_frames} is not a positive multiple of the tubelet depth {t_patch_size}")
        self.num_frames, self.t_patch_size, self.embed_dim = num_frames, t_patch_size, width
        grid = img_size // patch
        self.patch_embed = TubeletEmbed(patch, t_patch_size, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed_spatial = nn.Parameter(torch.zeros(1, grid * grid, width))
        self.pos_embed_temporal = nn.Parameter(torch.zeros(1, num_frames // t_patch_size, width))
        self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, width))
        norm = partial(nn.LayerNorm, eps=1e-6)
        rates = torch.linspace(0, drop_path, depth, device="cpu").tolist()  # the reference's decay rule (any device)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio=4.0, qkv_bias=True, drop_path=rate, norm_layer=norm,
                                          act_layer=nn.GELU, attn_layer=SeparateQKVAttention) for rate in rates)
        self.norm = norm(width)

    @torch.no_grad()
    def init_weights(self) -> VideoViT:
        """The encoder's share of facebookresearch/mae_st ``models_mae.initialize_weights`` (``trunc_init``
        False): CLS and position tables trunc-normal 0.02, the tubelet kernel xavier-uniform as a matrix, every
        Linear xavier-uniform with zero bias, every LayerNorm 1 / 0. (``models_vit`` itself leaves them at zeros
        and PyTorch's defaults: it always starts from a pre-trained file.)"""
        for p in (self.cls_token, self.pos_embed_spatial, self.pos_embed_temporal, self.pos_embed_class):
            nn.init.trunc_normal_(p, std=0.02)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        mae_init_(self)
        return self

    def as_clip(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) as it is, an image (B, C, H, W) repeated over ``num_frames`` (module docstring)."""
        if x.ndim == 4:
            return x.unsqueeze(2).expand(-1, -1, self.num_frames, -1, -1)
        if x.ndim != 5 or x.shape[2] != self.num_frames:
            raise UsageError(f"the video ViT takes (B, C, {self.num_frames}, H, W) clips or (B, C, H, W) images, got "
                             f"{tuple(x.shape)} (a loader clip (B, T, C, H, W) is passed as .permute(0, 2, 1, 3, 4))")
        return x

    def position_table(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1, t·h·w, D): spatial rows (resampled to ``grid`` where it differs from the stored one) repeated over
        the tubelet slots, plus temporal rows repeated over the places, time-major as the tokens are."""
        spatial = resample_pos_embed(self.pos_embed_spatial, grid, "dino", prefix=0)
        return separable_positions(spatial, self.pos_embed_temporal, None)

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, t·h·w, D): tubelet embeddings of a clip or image plus their positions (no CLS). MAE masks these."""
        tokens = self.patch_embed(self.as_clip(x))
        b, t, hw, d = tokens.shape
        h, w = (s // self.patch_embed.patch for s in x.shape[-2:])
        return tokens.reshape(b, t * hw, d) + self.position_table((h, w))

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """CLS (with ``pos_embed_class``) + ``tokens``, through the blocks and the final norm: (B, 1 + N, D)."""
        cls = (self.cls_token + self.pos_embed_class).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(self.patch_tokens(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The CLS token after the final norm (module docstring: eminorhan/mae_st's pooling), (B, D)."""
        return self.forward_features(x)[:, 0]


def build_video_vit(arch: str, num_frames: int = CLIP_FRAMES, t_patch_size: int = TUBELET_FRAMES,
                    drop_path: float = 0.0, img_size: int = 224) -> VideoViT:
    """``arch`` of :data:`~headcam.train.archs.VIDEO_VITS`, initialised as :meth:`VideoViT.init_weights` says."""
    v = VIDEO_VITS[arch]
    return VideoViT(patch=v.patch, width=v.width, depth=v.depth, heads=v.heads, num_frames=num_frames,
                    t_patch_size=t_patch_size, img_size=img_size, drop_path=drop_path).init_weights()


def clip_shape(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """``num_frames`` and ``t_patch_size`` of a video ViT's state dict, read from its tensors: the tubelet kernel
    (D, 3, t, p, p) and the temporal position rows (1, num_frames / t, D)."""
    t = int(state["patch_embed.proj.weight"].shape[2])
    return {"num_frames": t * int(state["pos_embed_temporal"].shape[1]), "t_patch_size": t}
