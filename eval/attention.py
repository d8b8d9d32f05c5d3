"""DINO's self-attention maps of a ViT: the last block's CLS attention per head and its thresholded masks.

As facebookresearch/dino ``visualize_attention.py`` (eminorhan/dino keeps it unchanged) draws them:

- ``model.get_last_selfattention(img)``: the tokens run through every block but the last; the last block's
  attention weights ``softmax(q kᵀ · scale)`` (heads x tokens x tokens) of its normed input are returned.
  timm's ``Attention`` (1.0) computes them inside ``F.scaled_dot_product_attention`` and never returns them,
  so :func:`last_selfattention` recomputes them from the block's own ``qkv`` projection on the input the block
  hands its attention (a forward pre-hook), with DINO's ``Attention.forward`` formula.
- ``attentions[0, :, 0, 1:]``: the CLS row over the patch tokens, one map per head on the patch grid.
- ``--threshold``: per head, the smallest set of patches that holds ``threshold`` of the attention mass
  (sort ascending, normalise, cumulative sum, keep ``cumval > 1 - threshold``, un-sort): :func:`threshold_masks`.
- both upsampled to pixels by the patch size with nearest interpolation.

The trunk is the one ``headcam-eval`` evaluates (ours or the zoo's, :mod:`headcam.eval.models`): a timm
``VisionTransformer``, possibly wrapped for probe features (:class:`~headcam.train.backbones.VitProbeFeatures`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer
from torch.nn import functional as F

from headcam.eval.report import pyplot

#: DINO's masks are drawn at this opacity (``display_instances(..., alpha=0.5)``).
MASK_ALPHA = 0.5


def vit_of(trunk: torch.nn.Module) -> VisionTransformer | None:
    """The ViT inside an evaluation trunk (unwrapping probe features), or None for a CNN."""
    vit = getattr(trunk, "vit", trunk)
    return vit if isinstance(vit, VisionTransformer) else None


def attention_weights(attn: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The weights a timm ``Attention`` module applies to its input ``x`` (B x N x C): DINO's
    ``attn = (q @ k.transpose(-2, -1)) * self.scale; attn = attn.softmax(dim=-1)``, B x heads x N x N
    (q and k after timm's optional q/k norms, identities in our ViTs and the zoo's)."""
    b, n, _ = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    return ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)


@torch.no_grad()
def last_selfattention(vit: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """DINO's ``get_last_selfattention``: the last block's attention weights for a batch of normalised
    images, B x heads x tokens x tokens (tokens = prefix + patches), float32."""
    seen: list[torch.Tensor] = []

    def keep(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.append(attention_weights(module, args[0].float()))

    hook = vit.blocks[-1].attn.register_forward_pre_hook(keep)
    try:
        vit.forward_features(images)
    finally:
        hook.remove()
    return seen[0]


def threshold_masks(attn: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean masks over the last dimension of ``attn`` (... x patches): per row, the patches that hold
    ``threshold`` of the attention mass, DINO's way (sort, normalise, cumulative sum, ``> 1 - threshold``,
    un-sort with the inverse permutation)."""
    val, idx = torch.sort(attn, dim=-1)
    val = val / val.sum(dim=-1, keepdim=True)
    kept = torch.cumsum(val, dim=-1) > (1 - threshold)
    return kept.gather(-1, torch.argsort(idx, dim=-1))


@dataclass
class AttentionMaps:
    """One image's maps on the patch grid: ``heads`` (H x h x w CLS attention), ``masks`` (H x h x w bool),
    ``mean`` (h x w, the mean over heads) and ``mean_mask`` (the same threshold applied to the mean)."""

    heads: torch.Tensor
    masks: torch.Tensor
    mean: torch.Tensor
    mean_mask: torch.Tensor


def cls_attention_maps(vit: VisionTransformer, images: torch.Tensor, threshold: float) -> list[AttentionMaps]:
    """Each image's CLS-to-patch attention per head, on the patch grid the ViT cut (a side that is not whole
    patches floored, as DINO crops it), with its thresholded masks."""
    patch = vit.patch_embed.patch_size
    grid = (images.shape[-2] // patch[0], images.shape[-1] // patch[1])
    weights = last_selfattention(vit, images)
    cls = weights[:, :, 0, vit.num_prefix_tokens:].float().cpu()  # B x H x patches
    masks = threshold_masks(cls, threshold)
    mean = cls.mean(dim=1)
    mean_masks = threshold_masks(mean, threshold)
    return [AttentionMaps(cls[i].reshape(-1, *grid), masks[i].reshape(-1, *grid), mean[i].reshape(grid),
                          mean_masks[i].reshape(grid)) for i in range(len(cls))]


def to_pixels(maps: torch.Tensor, patch: int) -> np.ndarray:
    """Patch-grid maps (... x h x w) upsampled by ``patch`` with nearest interpolation, as DINO shows them."""
    flat = maps.float().reshape(-1, 1, *maps.shape[-2:])
    up = F.interpolate(flat, scale_factor=patch, mode="nearest")
    return up.reshape(*maps.shape[:-2], *up.shape[-2:]).numpy()


def _masked(image: np.ndarray, mask: np.ndarray, colour: tuple[float, float, float]) -> np.ndarray:
    """DINO's ``apply_mask``: the image blended towards ``colour`` (0-1 RGB) where ``mask`` is set."""
    m = MASK_ALPHA * mask[..., None]
    return (image * (1 - m) + m * np.asarray(colour) * 255).clip(0, 255).astype(np.uint8)


def attention_grid(image: np.ndarray, maps: AttentionMaps, patch: int, threshold: float, title: str,
                   path: Path) -> None:
    """One PNG: the image, each head's CLS attention and the mean over heads (top row); the image again and
    each map's ``threshold`` mask overlaid, outlined (bottom row)."""
    plt = pyplot()
    grid_masks = torch.cat([maps.masks, maps.mean_mask[None]])
    heads = to_pixels(torch.cat([maps.heads, maps.mean[None]]), patch)
    masks = to_pixels(grid_masks, patch)
    image = image[: heads.shape[-2], : heads.shape[-1]]  # the floored remainder never reached a patch
    n = len(heads)
    colours = plt.get_cmap("hsv")(np.linspace(0, 1, n, endpoint=False))[:, :3]
    fig, axes = plt.subplots(2, n + 1, figsize=(1.4 * (n + 1), 3.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[0][0].imshow(image)
    axes[0][0].set_title("image", fontsize=7)
    axes[1][0].imshow(image)
    axes[1][0].set_title(f"masks: {threshold:.0%} of mass", fontsize=7)
    for j in range(n):
        name = f"head {j}" if j < n - 1 else "mean"
        axes[0][j + 1].imshow(heads[j], cmap="viridis")
        axes[0][j + 1].set_title(name, fontsize=7)
        axes[1][j + 1].imshow(_masked(image, masks[j], tuple(colours[j])))
        if 0 < masks[j].sum() < masks[j].size:
            axes[1][j + 1].contour(masks[j], levels=[0.5], colors=[colours[j]], linewidths=0.8)
        axes[1][j + 1].set_title(f"{int(grid_masks[j].sum())}/{maps.mean.numel()} patches", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
