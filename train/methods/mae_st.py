"""Spatiotemporal MAE (Feichtenhofer et al. 2022) under the loop's hooks: the model is :mod:`headcam.train.mae_st`.

When a run ends it leaves ``RUN/completions.png``: held-out clips, each as its original frames and then the
masked input and the completion under the three masks of eminorhan/hvm-1 ``visualize_completion.py``
(``--mask_type random | temporal | center``), one frame per column as that script's ``save_image(...,
nrow=16)`` grid shows them. Clips come from the ``val`` split when there is one (clips the model never trained
on), else the training split, in shard order with the ``eval`` recipe and the run's frames and stride; the
random mask is drawn from the run's seed, so successive figures of one run hide the same tubelets.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from headcam.shards.dataset import Dataset
from headcam.train.mae_st import MAEST, MASKS, mask_noise
from headcam.train.methods.base import Method, MethodContext
from headcam.train.recon import held_out_batch, to_pixels
from headcam.train.registry import MaeStConfig


class MaskedAutoencoderST(MAEST, Method):
    """The encoder is the trunk, a video ViT (config validation refuses another arch); leaves ``completions.png``."""

    def __init__(self, trunk: nn.Module, feat_dim: int, cfg: MaeStConfig, ctx: MethodContext):
        MAEST.__init__(self, trunk, cfg.mask_ratio, cfg.norm_pix_loss, cfg.decoder_width, cfg.decoder_depth,
                       cfg.decoder_heads, cfg.pred_t_dim)
        self.clip_stride = ctx.clip_stride

    def write_artifacts(self, out: Path, dataset: Dataset, size: int, seed: int) -> None:
        write_completions(self, dataset, out / "completions.png", size, self.clip_stride, seed=seed)


@torch.no_grad()
def write_completions(model: MAEST, dataset: Dataset, out: Path, size: int, clip_stride: int, n: int = 2,
                      seed: int = 0) -> Path:
    """The completion figure (module docstring) of the first ``n`` held-out clips, written to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = model.trunk.num_frames
    split, batch = held_out_batch(dataset, size, n, clip_frames=frames, clip_stride=clip_stride)
    device = next(model.parameters()).device
    clips = batch.views[0].to(device).permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)
    length = (frames // model.trunk.t_patch_size) * (size // model.patch) ** 2
    was_training = model.training
    model.eval()
    shown: list[tuple[str, torch.Tensor]] = []
    for kind in MASKS:
        noise = mask_noise(kind, clips.shape[0], length, torch.Generator().manual_seed(seed)).to(device)
        original, masked, completion = model.complete(clips, noise)
        if not shown:
            shown.append(("original", original))
        shown += [(f"{kind}: masked", masked), (f"{kind}: completion", completion)]
    model.train(was_training)
    rows, cols = clips.shape[0] * len(shown), shown[0][1].shape[2]
    fig, axes = plt.subplots(rows, cols, figsize=(0.8 * cols + 1.2, 0.8 * rows), squeeze=False)
    for b in range(clips.shape[0]):
        for r, (title, video) in enumerate(shown):
            row = axes[b * len(shown) + r]
            for t in range(cols):
                row[t].imshow(to_pixels(video[b, :, t]), interpolation="nearest")
                row[t].set_xticks([])
                row[t].set_yticks([])
            row[0].set_ylabel(f"clip {b + 1}\n{title}" if r == 0 else title, fontsize=6, rotation=0, ha="right",
                              va="center")
    fig.suptitle(f"spatiotemporal MAE, mask ratio {model.mask_ratio:g}, {split} clips of {frames} frames "
                 f"(stride {clip_stride})", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
