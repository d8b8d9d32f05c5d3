"""Cortical magnification: resample a view on a grid that magnifies the fixated centre (SPEC §5).

Input: B×C×H×W float images, fixations B×2 (row, col) on pixel centres, cover ratios ρ (B,).
Output: B×C×H×W (same size). Every output pixel reads the input at
``f + coef·g(R)·(v, u)/R`` (positions from :func:`headcam.pipelines.maths.magnification_positions`)
with ``grid_sample``: bilinear, zeros outside, ``align_corners=False`` (pixel i's centre is at
normalised ``(2i + 1)/n − 1``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from headcam.pipelines import maths


def magnify(x: torch.Tensor, fix: torch.Tensor, cover_ratio: torch.Tensor, mode: str, fovea: float,
            softness: float, exp_c: float = 1.5) -> torch.Tensor:
    """Magnify each image around its fixation; ``fovea``/``softness`` in px of this image (already scaled)."""
    b, _, h, w = x.shape
    if b == 0:
        return x
    pos = maths.magnification_positions(fix.to(x.device), cover_ratio.to(x.device), h, w, mode, fovea, softness,
                                        exp_c, dtype=x.dtype)
    grid = maths.to_grid_sample(pos, h, w)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
