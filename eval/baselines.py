"""Hand-made features that give learned ones something to beat (SPEC §7).

Both take the same images a network would see (the pipelines' ``eval`` views, mapped back from
ImageNet normalisation to [0, 1]), so a baseline and a network differ only in the features.

- HOG: 9 orientations, 16 px cells, 3x3-cell blocks, L2-Hys (skimage), read out by a linear SVM.
- Raw pixels: the view area-downsampled to ``side`` x ``side`` x 3 (default 16), flattened.
"""

from __future__ import annotations

import numpy as np
import torch

from headcam.console import UsageError
from headcam.pipelines.spec import IMAGENET_MEAN, IMAGENET_STD

HOG_ORIENTATIONS = 9
HOG_CELL = 16
HOG_BLOCK = 3
PIXELS_SIDE = 16


def unnormalise(views: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W ImageNet-normalised views back to [0, 1] RGB (float32, CPU)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (views.detach().float().cpu() * std + mean).clamp(0, 1)


def hog_features(images: torch.Tensor) -> np.ndarray:
    """HOG descriptors of B x 3 x H x W images in [0, 1]; needs at least 3 x 16 = 48 px a side."""
    from skimage.feature import hog

    side = min(images.shape[-2:])
    if side < HOG_CELL * HOG_BLOCK:
        raise UsageError(f"HOG needs images of at least {HOG_CELL * HOG_BLOCK} px ({HOG_BLOCK}x{HOG_BLOCK} blocks of "
                         f"{HOG_CELL} px cells); got {side} px: raise --size")
    arrays = images.permute(0, 2, 3, 1).numpy()
    return np.stack([
        hog(a, orientations=HOG_ORIENTATIONS, pixels_per_cell=(HOG_CELL, HOG_CELL),
            cells_per_block=(HOG_BLOCK, HOG_BLOCK), block_norm="L2-Hys", channel_axis=-1).astype(np.float32)
        for a in arrays
    ])


def pixel_features(images: torch.Tensor, side: int = PIXELS_SIDE) -> np.ndarray:
    """Images area-downsampled to ``side`` x ``side`` and flattened (B x 3*side*side)."""
    small = torch.nn.functional.adaptive_avg_pool2d(images, side)
    return small.flatten(1).numpy().astype(np.float32)


def baseline_features(kind: str, views: torch.Tensor) -> np.ndarray:
    """Features of one batch of normalised views for baseline ``kind`` (``hog`` or ``pixels``)."""
    images = unnormalise(views)
    if kind == "hog":
        return hog_features(images)
    if kind == "pixels":
        return pixel_features(images)
    raise ValueError(f"unknown baseline {kind!r}")
