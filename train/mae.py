"""Masked autoencoder on a headcam ViT trunk: mask most patches, encode the rest, reconstruct the pixels.

[0] MAE, He et al. 2021, https://arxiv.org/abs/2111.06377 (``models_mae.py``: ``random_masking``,
    ``forward_encoder``, ``forward_decoder``, ``forward_loss``; each a few lines here too).
[1] Orhan & Lake 2024: MAE on SAYCam (ViT-B/L, no pixel normalisation, constant lr).

The encoder *is* the trunk (:func:`headcam.train.backbones.build_vit`), so the checkpoint's
``backbone`` is an ordinary ViT for ``headcam-eval``; as in MAE its position embeddings are the
fixed 2-D sin-cos ones (not trained), resampled MAE's way (``pos_interp = "mae"``) at other grids.
The whole model, trunk included, is initialised as ``models_mae.initialize_weights`` does
(:meth:`MAE.initialize_weights`), replacing timm's init of the trunk.

Per sample, exactly ``int(L·(1 − r))`` patches are kept, the ones with the smallest uniform noise
(``ids_shuffle = argsort(noise)``, ``ids_restore = argsort(ids_shuffle)``). The decoder (512 wide, 8
blocks, 16 heads) sees the kept tokens plus a shared mask token in the masked places, each with a fixed
sin-cos position. The loss is the per-patch MSE on masked patches only, ``(loss·mask).sum() /
mask.sum()``; with ``norm_pix_loss`` the target is each patch normalised by its own mean and (unbiased)
variance + 1e-6.
"""

from __future__ import annotations

import functools
from functools import partial

import numpy as np
import torch
from timm.models.vision_transformer import Block
from torch import nn

from headcam.train.backbones import ViT, mae_init_, resample_pos_embed


@functools.cache
def _sincos_1d(dim: int, positions: tuple[int, ...]) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.asarray(positions, dtype=np.float64)[:, None] * omega[None, :]
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int, cls_token: bool = True) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos position embedding, (1, [1 +] H·W, dim): half the channels encode the
    row, half the column; the CLS position is zeros."""
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    emb = np.concatenate([_sincos_1d(dim // 2, tuple(cols.ravel().tolist())),
                          _sincos_1d(dim // 2, tuple(rows.ravel().tolist()))], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    return torch.from_numpy(emb).float().unsqueeze(0)


def random_masking(x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep ``int(L·(1 − r))`` tokens of each sample of ``x`` (B, L, D), chosen by uniform noise.

    Returns (kept tokens (B, L_keep, D), mask (B, L): 0 kept / 1 masked, in the original order,
    ``ids_restore`` (B, L): the permutation that puts shuffled tokens back).
    """
    b, length, d = x.shape
    keep = int(length * (1 - mask_ratio))
    noise = torch.rand(b, length, device=x.device) if noise is None else noise
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    kept = torch.gather(x, 1, ids_shuffle[:, :keep].unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(b, length, device=x.device)
    mask[:, :keep] = 0
    return kept, torch.gather(mask, 1, ids_restore), ids_restore


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, L, p·p·3), patches in row-major order, pixels (row, col, channel) inside."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(x: torch.Tensor, patch: int, grid_h: int, grid_w: int) -> torch.Tensor:
    b = x.shape[0]
    x = x.reshape(b, grid_h, grid_w, patch, patch, 3)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(b, 3, grid_h * patch, grid_w * patch)


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool) -> torch.Tensor:
    """Mean squared error per patch, averaged over the masked patches only."""
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


def fill_masked(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Patches (B, L, ·) for the reconstruction figures: (the target with its masked patches zeroed, the target
    with its masked patches replaced by the prediction). A ``norm_pix`` prediction is put back in each target
    patch's own mean and scale, as the loss normalised it."""
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        pred = pred * (var + 1e-6) ** 0.5 + mean
    keep = (1 - mask).unsqueeze(-1)
    return target * keep, pred * (1 - keep) + target * keep


class MAE(nn.Module):
    """``forward(views, labels)`` -> loss on ``views[0]``; :meth:`reconstruct` for the gallery."""

    def __init__(self, trunk: ViT, mask_ratio: float = 0.75, norm_pix_loss: bool = True,
                 decoder_width: int = 512, decoder_depth: int = 8, decoder_heads: int = 16):
        super().__init__()
        self.trunk = trunk
        self.classifier = None
        self.patch = trunk.patch_embed.patch_size[0]
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        width = trunk.embed_dim
        trunk.pos_embed.requires_grad_(False)
        trunk.pos_interp = "mae"
        self.decoder_embed = nn.Linear(width, decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_blocks = nn.Sequential(*[Block(decoder_width, decoder_heads, mlp_ratio=4.0, qkv_bias=True,
                                                    norm_layer=norm) for _ in range(decoder_depth)])
        self.decoder_norm = norm(decoder_width)
        self.decoder_pred = nn.Linear(decoder_width, self.patch * self.patch * 3)
        self.decoder_width = decoder_width
        self.initialize_weights()

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """facebookresearch/mae ``models_mae.py`` ``initialize_weights`` / ``_init_weights``: fixed sin-cos
        positions; the patch projection xavier-uniform as a Linear (weight viewed as [out, C·p·p]);
        ``cls_token`` and ``mask_token`` N(0, 0.02); every Linear xavier-uniform with zero bias; every
        LayerNorm weight 1, bias 0. (The decoder's positions are recomputed per grid in :meth:`decode`.)"""
        t = self.trunk
        t.pos_embed.copy_(sincos_2d(t.embed_dim, *t.patch_embed.grid_size))
        w = t.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(t.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        mae_init_(self)

    def encode(self, images: torch.Tensor, noise: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
        t = self.trunk
        gh, gw = images.shape[-2] // self.patch, images.shape[-1] // self.patch
        x = t.patch_embed(images).reshape(images.shape[0], gh * gw, -1)  # timm gives NHWC with dynamic sizes
        # the trunk's own (fixed, sin-cos) embedding at this grid, resampled as the trunk does when it is
        # evaluated at this size (MAE's way), so training and evaluation see the same positions
        pos = resample_pos_embed(t.pos_embed, (gh, gw), t.pos_interp)
        x, mask, ids_restore = random_masking(x + pos[:, 1:], self.mask_ratio, noise)
        cls = (t.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
        x = t.norm(t.blocks(torch.cat([cls, x], dim=1)))
        return x, mask, ids_restore, (gh, gw)

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = self.decoder_embed(latent)
        b, length = ids_restore.shape
        masked = self.mask_token.expand(b, length + 1 - x.shape[1], -1)
        tokens = torch.cat([x[:, 1:], masked], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], tokens], dim=1) + sincos_2d(self.decoder_width, *grid).to(x)
        return self.decoder_pred(self.decoder_norm(self.decoder_blocks(x)))[:, 1:]

    def forward(self, views: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        images = views[0]
        latent, mask, ids_restore, grid = self.encode(images)
        pred = self.decode(latent, ids_restore, grid)
        return masked_patch_loss(pred.float(), patchify(images, self.patch).float(), mask, self.norm_pix_loss)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, noise: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked input, reconstruction), both (B, 3, H, W) in the input's normalised space; a
        reconstruction made with ``norm_pix_loss`` is put back in each patch's own mean and scale."""
        latent, mask, ids_restore, grid = self.encode(images, noise)
        pred = self.decode(latent, ids_restore, grid).float()
        masked, recon = fill_masked(pred, patchify(images, self.patch).float(), mask, self.norm_pix_loss)
        return unpatchify(masked, self.patch, *grid), unpatchify(recon, self.patch, *grid)
