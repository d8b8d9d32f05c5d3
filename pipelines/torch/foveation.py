"""Foveation: a spatially varying blur that grows with eccentricity from a fixation (SPEC §4).

Input: B×C×H×W float images in [0, 1], fixations B×2 (row, col) on pixel centres, fovea area
fractions B. Output: the same shape, ``Mf·I + Σn Mn·Blur_σn(I)`` clipped to [0, 1].

Batched: ring n is blurred for the whole batch in one grouped convolution (each image with its
own σn, see :mod:`headcam.pipelines.torch.blur`), and only for images whose ring n is not the
last (always empty) one and whose kernel is wider than one tap. Masks and sigmas come from
:mod:`headcam.pipelines.maths`; the original looped over rings per image.
"""

from __future__ import annotations

import torch
from headcam.pipelines import maths
from headcam.pipelines.torch.blur import blur_with_taps


def foveate(x: torch.Tensor, fix: torch.Tensor, area: torch.Tensor, spacing: float = 0.2, factor: float = 0.06,
            field_deg: float = 20.0) -> torch.Tensor:
    b, _, h, w = x.shape
    if b == 0:
        return x
    d = maths.degrees_per_pixel(h, w, field_deg)
    fix = fix.to(x.device)
    e0 = maths.fovea_e0(area.to(x.device, torch.float64), h, w, d)
    n_rings = maths.ring_count(e0, maths.max_eccentricity(fix, h, w, d), spacing)
    log_e = maths.log_eccentricity(fix, h, w, d, x.dtype)
    log_e0 = torch.log(e0).to(x.dtype)
    out = maths.fovea_mask(log_e, log_e0, spacing).unsqueeze(1) * x
    for n in range(int(n_rings.max().item()) - 1):
        active = torch.nonzero(n < n_rings - 1).flatten()
        mask = maths.ring_mask(log_e[active], log_e0[active], n, spacing).unsqueeze(1)
        sigma = maths.ring_sigma(e0[active], n, spacing, d, factor)
        k = maths.kernel_size(sigma)
        blurred = x[active]
        wide = torch.nonzero(k > 1).flatten()
        if wide.numel():
            width = int(k[wide].max().item())
            taps = maths.gaussian_taps(sigma[wide], k[wide], width, x.dtype)
            blurred = blurred.clone()
            blurred[wide] = blur_with_taps(x[active[wide]], taps)
        out[active] += mask * blurred
    return out.clamp(0, 1)
