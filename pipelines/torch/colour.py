"""Batched colour ops with per-sample factors (B×3×H×W float in [0, 1]).

torchvision's functional colour ops take one factor per call; a view batch needs one per
image. The formulas are torchvision's (ITU-R 601 luma, blend-and-clip, hue by HSV rotation), so
the torch backend means what SimCLR's ``ColorJitter`` means (``jitter.order=random``).
``jitter.order=fixed`` is DALI's fused ``color_twist`` instead: :func:`colour_twist` applies
:func:`headcam.pipelines.maths.twist_matrix`, one matrix per image.
"""

from __future__ import annotations

import torch

from headcam.pipelines import maths
from headcam.pipelines.maths import LUMA


def luma(x: torch.Tensor) -> torch.Tensor:
    """B×1×H×W grey image."""
    r, g, b = x.unbind(dim=1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1).to(x)
    return (f * x + (1 - f) * other).clamp(0, 1)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * factor.view(-1, 1, 1, 1).to(x)).clamp(0, 1)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, luma(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, luma(x), factor)


def hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` (fraction of a turn, in [-0.5, 0.5]) per image."""
    h, s, v = _rgb_to_hsv(x)
    h = torch.remainder(h + shift.view(-1, 1, 1).to(x), 1.0)
    return _hsv_to_rgb(h, s, v)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    return luma(x).expand_as(x).contiguous()


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    s = delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta == 0, torch.zeros_like(h), h)
    return torch.remainder(h / 6.0, 1.0), s, maxc


_SECTOR_OFFSETS = torch.tensor([5.0, 3.0, 1.0])


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Closed form: channel n = v − v·s·clamp(min(k, 4 − k), 0, 1), k = (n + 6h) mod 6, n = 5, 3, 1 for R, G, B
    (the same values as the six-sector table torchvision uses, without building it)."""
    k = torch.remainder(_SECTOR_OFFSETS.to(h).view(1, 3, 1, 1) + 6.0 * h.unsqueeze(1), 6.0)
    weight = torch.minimum(k, 4.0 - k).clamp(0, 1)
    v, s = v.unsqueeze(1), s.unsqueeze(1)
    return (v - v * s * weight).clamp(0, 1)


JITTER_OPS = (brightness, contrast, saturation, hue)


def colour_jitter(x: torch.Tensor, on: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """SimCLR colour jitter: for images with ``on``, apply the four ops in each image's own ``order``.

    ``factors`` B×4 (brightness, contrast, saturation, hue shift); ``order`` B×4 permutations.
    Step k applies, to every image, the op at position k of its order: four batched calls per
    step, each on the images that chose that op, so every image pays for exactly four ops.
    """
    out = x.clone()
    for step in range(4):
        for op_index, op in enumerate(JITTER_OPS):
            sel = torch.nonzero(on & (order[:, step] == op_index)).flatten()
            if sel.numel():
                out.index_copy_(0, sel, op(out.index_select(0, sel), factors[sel, op_index]))
    return out


def colour_twist(x: torch.Tensor, on: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """The fused jitter (``jitter.order=fixed``): :func:`maths.twist_matrix` on the images with ``on``, clipped
    once, as DALI's ``fn.color_twist``. ``factors`` B×4 as :func:`colour_jitter`'s."""
    out = x.clone()
    sel = torch.nonzero(on).flatten()
    if sel.numel():
        matrix, offset = maths.twist_matrix(factors[sel])
        twisted = torch.einsum("bij,bjhw->bihw", matrix.to(x), out.index_select(0, sel))
        out.index_copy_(0, sel, (twisted + offset.to(x).view(-1, 1, 1, 1)).clamp_(0, 1))
    return out
