"""The MAE reconstruction gallery: original, masked input and reconstruction of 8 held-out frames (and the
held-out batch and pixel mapping that mae_st's completion figure shares).

Written as ``RUN/recon.png`` when an MAE run ends (finished or preempted), so a person can see
what the model learned to fill in without any extra command. Frames come from the dataset's
``val`` split when it has one (frames the model never trained on), else the training split, in
shard order with the ``eval`` recipe; the masks are drawn from a fixed seed so successive runs
show the same patches hidden.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from headcam.pipelines.batch import Batch
from headcam.pipelines.loader import LoaderConfig, build_loader
from headcam.pipelines.spec import recipe_spec
from headcam.shards.dataset import Dataset
from headcam.train.mae import MAE


def held_out_batch(dataset: Dataset, size: int, n: int, **clips: int) -> tuple[str, Batch]:
    """The first ``n`` samples (``clips``: ``clip_frames`` / ``clip_stride``, clips) of the ``val`` split, else of
    the first split, in shard order with the ``eval`` recipe; and that split's name."""
    split = "val" if "val" in dataset.splits else dataset.splits[0]
    return split, next(iter(build_loader(dataset, split, LoaderConfig.for_eval(size=size, batch_size=n, **clips))))


def to_pixels(x: torch.Tensor) -> np.ndarray:
    """A (3, H, W) view in the ``eval`` recipe's normalisation -> (H, W, 3) in [0, 1], for ``imshow``."""
    spec = recipe_spec("eval")
    mean, std = np.asarray(spec.mean).reshape(3, 1, 1), np.asarray(spec.std).reshape(3, 1, 1)
    return np.clip(x.float().cpu().numpy() * std + mean, 0, 1).transpose(1, 2, 0)


@torch.no_grad()
def write_reconstructions(model: MAE, dataset: Dataset, out: Path, size: int, n: int = 8, seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split, batch = held_out_batch(dataset, size, n)
    device = next(model.parameters()).device
    images = batch.views[0].to(device)
    length = (size // model.patch) ** 2
    noise = torch.rand(images.shape[0], length, generator=torch.Generator().manual_seed(seed)).to(device)
    was_training = model.training
    model.eval()
    masked, recon = model.reconstruct(images, noise)
    model.train(was_training)
    rows = images.shape[0]
    fig, axes = plt.subplots(rows, 3, figsize=(4.8, 1.6 * rows), squeeze=False)
    for r in range(rows):
        for c, (title, img) in enumerate((("original", images[r]), ("masked", masked[r]),
                                          ("reconstruction", recon[r]))):
            ax = axes[r][c]
            ax.imshow(to_pixels(img), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
    fig.suptitle(f"MAE, mask ratio {model.mask_ratio:g}, {split} frames", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
