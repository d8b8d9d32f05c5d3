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

Clips of a spatiotemporal ViT (:class:`~headcam.train.video_vit.VideoViT`) follow eminorhan/mae_st
``visualize_attn.py:342-350``: the last block's attention of the clip (heads x tokens x tokens, one CLS token and
t x h x w tubelet tokens), its CLS row over the tubelets ``attn[:, 0, 1:]`` viewed as heads x t x h x w and
averaged over the heads, one map per tubelet (:func:`clip_attention`), upsampled by the patch size (nearest) and
drawn under the first frame of each tubelet (``vid[::2]``), every map scaled to its own range (``save_image(...,
normalize=True, scale_each=True)``): :func:`clip_attention_grid`. The video ViT keeps the reference's separate
``q`` / ``k`` projections; :func:`attention_weights` reads either form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer
from torch.nn import functional as F

from headcam.console import UsageError
from headcam.eval.report import pyplot

if TYPE_CHECKING:
    from headcam.eval.decode import DecodeOptions
    from headcam.eval.models import EvalModel
    from headcam.eval.protocols import Plan

#: DINO's masks are drawn at this opacity (``display_instances(..., alpha=0.5)``).
MASK_ALPHA = 0.5
#: ``visualize_attn.py:244-245``: 16 frames by linspace over frames 0-64 of a clip decoded from 30 fps video
#: (``temporal_sampling(frames, 0, 64, 16)``), 64 / 15 frames apart: 0.142 s.
CLIP_FRAME_INTERVAL = 64 / 15 / 30
CLIP_DIR = "clip_attention"


def vit_of(trunk: torch.nn.Module) -> VisionTransformer | None:
    """The ViT inside an evaluation trunk (unwrapping probe features), or None for a CNN."""
    vit = getattr(trunk, "vit", trunk)
    return vit if isinstance(vit, VisionTransformer) else None


def video_vit_of(trunk: torch.nn.Module) -> torch.nn.Module | None:
    """The spatiotemporal ViT an evaluation trunk is, or None."""
    from headcam.train.video_vit import VideoViT

    return trunk if isinstance(trunk, VideoViT) else None


def attention_weights(attn: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The weights an attention module applies to its input ``x`` (B x N x C): DINO's
    ``attn = (q @ k.transpose(-2, -1)) * self.scale; attn = attn.softmax(dim=-1)``, B x heads x N x N. A timm
    ``Attention``: q and k of its fused ``qkv``, after timm's optional q/k norms (identities in our ViTs and the
    zoo's); a video ViT's: its separate ``q`` and ``k`` at scale head_dim^-0.5 (mae_st ``util/video_vit.py``)."""
    if not hasattr(attn, "qkv"):
        q, k, _ = attn.heads(x)
        return ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(dim=-1)
    b, n, _ = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    return ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)


@torch.no_grad()
def last_selfattention(vit: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """DINO's ``get_last_selfattention``: the last block's attention weights for a batch of normalised
    images (a video ViT: clips, B x C x T x H x W), B x heads x tokens x tokens (tokens = prefix + patches),
    float32."""
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


def clip_attention(vit: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """Each clip's (B x C x T x H x W, normalised) last-block CLS attention to its tubelets, averaged over the
    heads: B x t x h x w (t = T / tubelet depth; sides floored to whole patches), as ``visualize_attn.py``."""
    grid = (clips.shape[-2] // vit.patch_embed.patch, clips.shape[-1] // vit.patch_embed.patch)
    t = clips.shape[2] // vit.t_patch_size
    weights = last_selfattention(vit, clips)
    cls = weights[:, :, 0, 1:].float().cpu()  # B x heads x t·h·w, time-major as the tokens
    return cls.reshape(len(cls), -1, t, *grid).mean(dim=1)


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


def clip_attention_grid(frames: np.ndarray, maps: torch.Tensor, patch: int, title: str, path: Path) -> None:
    """One PNG of a clip: the first frame of each tubelet (top row; ``frames`` T x H x W x 3 uint8) over its
    mean-over-heads CLS attention map (bottom row; ``maps`` t x h x w), each map upsampled by ``patch`` (nearest)
    and scaled to its own range, as ``visualize_attn.py`` saves them."""
    plt = pyplot()
    t = len(maps)
    shown = frames[:: len(frames) // t][:t]
    up = to_pixels(maps, patch)
    fig, axes = plt.subplots(2, t, figsize=(1.4 * t, 3.2), squeeze=False)
    for j in range(t):
        for ax in axes[:, j]:
            ax.axis("off")
        axes[0][j].imshow(shown[j][: up.shape[-2], : up.shape[-1]])
        axes[0][j].set_title(f"frame {j * (len(frames) // t)}", fontsize=7)
        lo, hi = float(up[j].min()), float(up[j].max())
        axes[1][j].imshow(up[j], cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1e-12)
        axes[1][j].set_title(f"tubelet {j}", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_clip_attention(model: EvalModel, plan: Plan, opts: DecodeOptions, out: Path, n: int,
                         stride: int | None = None) -> dict[str, Any]:
    """The first ``n`` held-out clips of ``plan`` long enough for the video ViT's ``num_frames`` frames ``stride``
    sampled frames apart (None: :data:`CLIP_FRAME_INTERVAL` at the dataset's ingest fps), read as evaluation reads
    (resize, centre crop, the first valid start; normalised as every headcam evaluation, the eval recipe's
    ImageNet mean and std, where visualize_attn.py's are 0.45 / 0.225), each drawn by :func:`clip_attention_grid`
    into ``out/clip_attention/KEY.png`` (KEY: the clip's first frame); what analysis.json keeps of them. An image
    dataset is a one-line UsageError."""
    from headcam.eval.baselines import unnormalise
    from headcam.eval.features import prepare_trunk
    from headcam.eval.fewshot import clip_key_map, clip_keys, clip_side
    from headcam.eval.finetune_presets import interval_stride
    from headcam.pipelines.loader import LoaderConfig, build_loader

    if plan.test.dataset.kind != "video":
        raise UsageError(f"--attention on {model.name} (a spatiotemporal ViT) draws the attention of clips; "
                         f"{plan.test.dataset.root} holds {plan.test.dataset.kind or 'no clips'}: give a video dataset")
    vit = prepare_trunk(video_vit_of(model.trunk), opts.device)
    frames = vit.num_frames
    fps = (plan.test.dataset.meta.get("params") or {}).get("fps")
    stride = stride or interval_stride(CLIP_FRAME_INTERVAL, fps)
    span = (frames - 1) * stride + 1
    side, short = clip_side(plan.test, span)
    if not side.keys:
        raise UsageError(f"--attention on {model.name}: no held-out clip holds {span} frames ({frames} frames "
                         f"{stride} apart); ingest longer clips (--clip-len) or give a smaller --clip-stride")
    side = dataclasses.replace(side, keys=side.keys[:n], labels=side.labels[:n])
    key_map, label = clip_key_map(side), dict(zip(side.keys, side.labels.tolist(), strict=True))
    cfg = LoaderConfig.for_eval(size=opts.size, batch_size=max(1, opts.batch_size // frames), device=opts.device,
                                workers=opts.workers,
                                keys=clip_keys(side), clip_frames=frames, clip_stride=stride)
    (out / CLIP_DIR).mkdir(parents=True, exist_ok=True)
    grids, grid = {}, []
    for batch in build_loader(side.dataset, side.splits, cfg):
        clips = batch.views[0]  # B x T x C x H x W
        maps = clip_attention(vit, clips.permute(0, 2, 1, 3, 4).to(opts.device))
        pixels = (unnormalise(clips.flatten(0, 1)) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for i, key in enumerate(batch.keys):
            row = key_map[key]
            grids[row], grid = f"{CLIP_DIR}/{row}.png", list(maps[i].shape)
            clip_attention_grid(pixels[i * frames:(i + 1) * frames], maps[i], vit.patch_embed.patch,
                                f"{model.name} · {row} ({plan.class_names[label[row]]})", out / grids[row])
    return {"frames": frames, "stride": stride, "dataset_fps": fps, "tubelet": vit.t_patch_size,
            "patch": vit.patch_embed.patch, "heads": vit.blocks[-1].attn.num_heads, "grid": grid,
            "too_short": short, "classes": {k: plan.class_names[label[k]] for k in grids},
            "grids": [grids[k] for k in side.keys if k in grids]}


def clip_attention_md(summary: dict[str, Any]) -> list[str]:
    """report.md's section of :func:`write_clip_attention`'s grids."""
    grid = "x".join(str(n) for n in summary["grid"])
    lines = ["## Clip attention (spatiotemporal ViT)", "",
             f"The last block's CLS attention to the {grid} (tubelets x rows x columns) tokens of each clip "
             f"({summary['frames']} frames, {summary['stride']} sampled frames apart, tubelets of "
             f"{summary['tubelet']} frames, {summary['patch']} px patches), averaged over the {summary['heads']} "
             "heads: one map per tubelet under its first frame, each scaled to its own range, as eminorhan/mae_st "
             "`visualize_attn.py` draws them (upsampled by the patch size, nearest).", ""]
    for path in summary["grids"]:
        key = Path(path).stem
        lines += [f"### {key} ({summary['classes'][key]})", "", f"![clip attention of {key}]({path})", ""]
    return lines
