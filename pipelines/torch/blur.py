"""Gaussian blurs with a different kernel per image, as one grouped convolution.

Separable taps, torch-style reflect padding of k//2. Each image's taps are zero-padded to the
batch's widest kernel; with reflect padding of half that width the result equals blurring each
image with its own kernel and its own k//2 padding (the extra taps are zero), so one ``conv2d``
call per direction serves the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from headcam.pipelines import maths


def blur_with_taps(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Blur B×C×H×W ``x`` with per-image 1-D ``taps`` (B×k, k odd), separably, reflect padding."""
    b, c, h, w = x.shape
    k = taps.shape[1]
    if k == 1:
        return x
    pad = k // 2
    weight = taps.to(x).repeat_interleave(c, dim=0)  # (B*C)×k
    flat = x.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), weight.view(b * c, 1, 1, k), groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), weight.view(b * c, 1, k, 1), groups=b * c)
    return flat.view(b, c, h, w)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own sigma (B,) and odd kernel size (B,)."""
    width = int(k.max().item()) if k.numel() else 1
    return blur_with_taps(x, maths.gaussian_taps(sigma.to(x.device), k.to(x.device), width, x.dtype))
