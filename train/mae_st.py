"""Spatiotemporal masked autoencoder on a headcam video ViT trunk: mask 90 % of a clip's tubelets, encode
the rest, reconstruct the pixels of the masked ones.

[0] Feichtenhofer, Fan, Li & He 2022, "Masked Autoencoders As Spatiotemporal Learners",
    https://arxiv.org/abs/2205.09113 (facebookresearch/mae_st ``models_mae.py``: ``random_masking``,
    ``forward_encoder``, ``forward_decoder``, ``forward_loss``, ``initialize_weights``).
[1] Orhan, Wang, Wang, Ren & Lake 2024, SAYCam ViT-H/14 (eminorhan/mae_st ``scripts/train_say.sh``; its
    ``models_mae.py`` adds the ``temporal`` and ``center`` masks that :func:`mask_noise` transcribes, used by
    eminorhan/hvm-1 ``visualize_completion.py`` and by ``RUN/completions.png``, :mod:`headcam.train.methods.mae_st`).

The encoder *is* the trunk (:mod:`headcam.train.video_vit`), so the checkpoint's ``backbone`` is the video ViT
``headcam-eval`` reads; the decoder (``decoder_*``, ``mask_token``) lives here. A clip (B, 3, T, H, W) is cut
into t·h·w tubelets of ``t_patch_size`` frames × p × p pixels, ordered (t, h, w); separable learned position
embeddings (spatial + temporal, plus one for the CLS token) are added, and per sample exactly
``int(L·(1 − r))`` tubelets are kept, the ones with the smallest uniform noise (the image MAE's
:func:`headcam.train.mae.random_masking`: adding the positions before the gather, as here, or gathering them
with ``ids_keep`` after, as the reference does, is the same sum). The decoder sees the kept tokens, a shared
mask token in the masked places, its own CLS token and its own separable positions, and predicts for every
tubelet ``u·p·p·3`` pixels, u = ``t_patch_size · pred_t_dim / T`` frames: the target is the clip sampled at
``pred_t_dim`` frames (``linspace(0, T − 1, pred_t_dim)``, rounded down), patchified (t, h, w)/(u, p, p, c).
The loss is :func:`headcam.train.mae.masked_patch_loss`: per-tubelet MSE averaged over the masked tubelets,
``norm_pix_loss`` normalising each target tubelet by its own mean and unbiased variance + 1e-6.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from headcam.console import UsageError
from headcam.train.backbones import mae_init_, resample_pos_embed
from headcam.train.mae import fill_masked, masked_patch_loss, random_masking
from headcam.train.video_vit import SeparateQKVAttention, VideoViT, separable_positions

#: Masks of :func:`mask_noise`: the training mask and the two the reference's completion figures add.
MASKS = ("random", "temporal", "centre")


def mask_noise(kind: str, batch: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The noise whose ``argsort`` :func:`headcam.train.mae.random_masking` keeps the smallest of (B, L).

    ``random``: uniform, the training mask. ``temporal`` (eminorhan/mae_st ``temporal_masking``: noise
    ``arange(L)``): the first tubelets in (t, h, w) order are kept, so the last part of the clip is hidden.
    ``centre`` (``center_masking``: noise ``[0 .. L/2 − 1, L/2 − 1 .. 0]``): both ends of the sequence are kept
    and its middle, the clip's middle in time, is hidden; the reference's ties (i and L − 1 − i) are broken
    towards the earlier tubelet so the mask is the same on every machine.
    """
    if kind == "random":
        return torch.rand(batch, length, generator=generator)
    i = torch.arange(length, dtype=torch.float64)
    if kind == "temporal":
        noise = i
    elif kind == "centre":
        mirror = length - 1 - i
        noise = torch.minimum(i, mirror) + 0.5 * (i > mirror)
    else:
        raise ValueError(f"mask '{kind}': one of {', '.join(MASKS)}")
    return noise.expand(batch, length).clone()


def target_frames(clips: torch.Tensor, pred_t_dim: int) -> torch.Tensor:
    """The frames the decoder predicts: (B, C, T, H, W) sampled at ``linspace(0, T − 1, pred_t_dim)``, rounded
    down as ``.long()`` does (``forward_loss``'s ``index_select``)."""
    index = torch.linspace(0, clips.shape[2] - 1, pred_t_dim).long().to(clips.device)
    return torch.index_select(clips, 2, index)


def patchify(clips: torch.Tensor, patch: int, u: int) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, t·h·w, u·p·p·3): tubelets of u frames × p × p pixels in (t, h, w) order, the
    values inside in (frame, row, column, channel) order (the reference's ``nctuhpwq->nthwupqc``)."""
    b, c, t, h, w = clips.shape
    x = clips.reshape(b, c, t // u, u, h // patch, patch, w // patch, patch)
    x = torch.einsum("nctuhpwq->nthwupqc", x)
    return x.reshape(b, (t // u) * (h // patch) * (w // patch), u * patch * patch * c)


def unpatchify(x: torch.Tensor, patch: int, u: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify` for a (t, h, w) tubelet grid: (B, L, u·p·p·3) -> (B, 3, t·u, h·p, w·p)."""
    b, (t, h, w) = x.shape[0], grid
    x = x.reshape(b, t, h, w, u, patch, patch, 3)
    return torch.einsum("nthwupqc->nctuhpwq", x).reshape(b, 3, t * u, h * patch, w * patch)


def clip_loss(pred: torch.Tensor, clips: torch.Tensor, mask: torch.Tensor, patch: int, u: int, pred_t_dim: int,
              norm_pix: bool) -> torch.Tensor:
    """``forward_loss``: MSE per tubelet of the sampled target frames, averaged over the masked tubelets."""
    target = patchify(target_frames(clips, pred_t_dim), patch, u)
    return masked_patch_loss(pred, target, mask, norm_pix)




class MAEST(nn.Module):
    """``forward(views, labels)`` -> loss on ``views[0]``, clips (B, T, C, H, W); :meth:`complete` for the figure.

    The encoder is ``trunk``, a :class:`~headcam.train.video_vit.VideoViT` (its tubelets, positions, CLS token,
    blocks and norm); the decoder mirrors it at ``decoder_width`` with the reference's parameter names
    (``decoder_embed``, ``mask_token``, ``decoder_cls_token``, ``decoder_pos_embed_{spatial,temporal,class}``,
    ``decoder_blocks``, ``decoder_norm``, ``decoder_pred``). Its spatial table has the trunk's stored grid and is
    resampled to a view's grid the way the trunk resamples its own, so both see positions alike.
    """

    def __init__(self, trunk: VideoViT, mask_ratio: float = 0.9, norm_pix_loss: bool = True,
                 decoder_width: int = 512, decoder_depth: int = 4, decoder_heads: int = 16, pred_t_dim: int = 0):
        super().__init__()
        self.trunk, self.classifier = trunk, None
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        self.patch, frames = trunk.patch_embed.patch, trunk.num_frames
        self.pred_t_dim = pred_t_dim or frames
        # frames per predicted tubelet (the reference's t_pred_patch_size): t_patch_size * pred_t_dim / num_frames
        self.u, rest = divmod(trunk.t_patch_size * self.pred_t_dim, frames)
        if rest or self.u < 1 or self.pred_t_dim > frames:
            raise UsageError(f"mae_st.pred_t_dim={pred_t_dim}: the predicted frames must be at most the clip's "
                             f"{frames} and whole per tubelet ({trunk.t_patch_size} x pred_t_dim / {frames}: an "
                             f"integer)")
        self.decoder_embed = nn.Linear(trunk.embed_dim, decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.decoder_cls_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        places, slots = trunk.pos_embed_spatial.shape[1], trunk.pos_embed_temporal.shape[1]
        self.decoder_pos_embed_spatial = nn.Parameter(torch.zeros(1, places, decoder_width))
        self.decoder_pos_embed_temporal = nn.Parameter(torch.zeros(1, slots, decoder_width))
        self.decoder_pos_embed_class = nn.Parameter(torch.zeros(1, 1, decoder_width))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_width, decoder_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm, act_layer=nn.GELU,
                  attn_layer=SeparateQKVAttention) for _ in range(decoder_depth))
        self.decoder_norm = norm(decoder_width)
        self.decoder_pred = nn.Linear(decoder_width, self.u * self.patch * self.patch * 3)
        self.initialize_weights()

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """The decoder's share of ``models_mae.initialize_weights`` (``trunc_init`` False; the trunk's share is
        :meth:`VideoViT.init_weights`): position tables trunc-normal 0.02, ``mask_token`` N(0, 0.02), every
        Linear xavier-uniform with zero bias, every LayerNorm 1 / 0. ``decoder_cls_token`` stays zero: the
        reference never initialises it."""
        for p in (self.decoder_pos_embed_spatial, self.decoder_pos_embed_temporal, self.decoder_pos_embed_class):
            nn.init.trunc_normal_(p, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for name, child in self.named_children():
            if name != "trunk":
                mae_init_(child)

    def grid(self, clips: torch.Tensor) -> tuple[int, int, int]:
        """The (t, h, w) tubelet grid of (B, C, T, H, W) clips."""
        return (clips.shape[2] // self.trunk.t_patch_size, clips.shape[3] // self.patch, clips.shape[4] // self.patch)

    def encode(self, clips: torch.Tensor, noise: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``forward_encoder``: (latent of the kept tubelets without CLS (B, L_keep, D), mask (B, L), ids_restore)."""
        kept, mask, ids_restore = random_masking(self.trunk.patch_tokens(clips), self.mask_ratio, noise)
        return self.trunk.encode(kept)[:, 1:], mask, ids_restore

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``forward_decoder``: (B, L, u·p·p·3) predictions for every tubelet, in (t, h, w) order."""
        x = self.decoder_embed(latent)
        b, length = ids_restore.shape
        tokens = torch.cat([x, self.mask_token.expand(b, length - x.shape[1], -1)], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        spatial = resample_pos_embed(self.decoder_pos_embed_spatial, grid[1:], "dino", prefix=0)
        pos = separable_positions(spatial, self.decoder_pos_embed_temporal, self.decoder_pos_embed_class)
        x = torch.cat([self.decoder_cls_token.expand(b, -1, -1), tokens], dim=1) + pos
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        clips = views[0].permute(0, 2, 1, 3, 4)  # the loader's (B, T, C, H, W) -> the reference's (B, C, T, H, W)
        latent, mask, ids_restore = self.encode(clips)
        pred = self.decode(latent, ids_restore, self.grid(clips))
        return clip_loss(pred.float(), clips.float(), mask, self.patch, self.u, self.pred_t_dim, self.norm_pix_loss)

    @torch.no_grad()
    def complete(self, clips: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reference's ``visualize=True`` outputs for (B, C, T, H, W) clips and a mask's ``noise``: (target
        frames, masked input, completion), each (B, 3, pred_t_dim, H, W) in the clips' normalised space; the
        completion keeps the visible tubelets and fills the masked ones with the prediction (put back in each
        tubelet's own mean and scale when ``norm_pix_loss``)."""
        latent, mask, ids_restore = self.encode(clips, noise)
        grid = self.grid(clips)
        pred = self.decode(latent, ids_restore, grid).float()
        target = patchify(target_frames(clips, self.pred_t_dim), self.patch, self.u).float()
        grid = (self.pred_t_dim // self.u, *grid[1:])
        return tuple(unpatchify(x, self.patch, self.u, grid)
                     for x in (target, *fill_masked(pred, target, mask, self.norm_pix_loss)))
