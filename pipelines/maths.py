"""The maths of fixations, foveation, cortical magnification, blur and colour, once, for every backend.

Backends differ only in the kernel that applies these numbers (a grouped convolution and
``grid_sample`` in torch, ``gaussian_blur`` and ``experimental.remap`` in DALI); the masks, ring
sigmas, kernel sizes, warp grids, fixation rules and constants come from here (SPEC.md §2-§5).

Per-pixel and per-sample formulas are written once against a small array namespace
(:class:`Ops`): :data:`TORCH` runs them on tensors (float32 or float64, CPU or CUDA), :data:`NUMPY`
on scalars and arrays, and ``headcam.pipelines.dali.ops.DALI`` on DALI DataNodes inside the graph
(``nvidia.dali.math``), so changing a formula or a constant here changes both backends.

Coordinates: (row, col) pixel indices, pixel ``i``'s centre at ``i``; a fixation sits on a pixel
centre. ``grid_sample`` is called with ``align_corners=False``, so pixel ``i`` of a side of ``n``
has normalised coordinate ``(2i + 1)/n - 1`` (see :func:`to_grid_sample`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from headcam.pipelines.spec import REFERENCE_SIDE

# ---------------------------------------------------------------- constants

#: Half-width of the plateau's flat top (SPEC §4: g = 1 for |x| < 1/4, 0 from 3/4).
PLATEAU_FLAT = 0.25
#: Kernel rule of the paper: k = int(KERNEL_SIGMAS·σ), +1 if even (SPEC §4).
KERNEL_SIGMAS = 3.0
#: Eccentricities are clamped to this fraction of a pixel's, so the fixation pixel's log is finite.
ECCENTRICITY_FLOOR = 1e-6
#: The SimCLR blur drops Gaussian taps beyond this many σ (scipy's ``truncate=4.0``): see :func:`blur_kernel_sizes`.
BLUR_TRUNCATE = 4.0
#: DINO's local crops are 96 px beside 224 px global views: the default local side is this fraction of the side.
LOCAL_SIDE_RATIO = 96 / 224
#: torchvision's rgb_to_grayscale weights (ITU-R 601): grayscale, saturation and the contrast centre.
LUMA = (0.2989, 0.587, 0.114)


# ---------------------------------------------------------------- array namespaces


@dataclass(frozen=True)
class Ops:
    """The elementwise functions the shared formulas need; one instance per array library."""

    sqrt: Callable[[Any], Any]
    log: Callable[[Any], Any]
    cos: Callable[[Any], Any]
    abs: Callable[[Any], Any]
    floor: Callable[[Any], Any]
    ceil: Callable[[Any], Any]
    clamp: Callable[[Any, float, float], Any]
    minimum: Callable[[Any, Any], Any]
    maximum: Callable[[Any, Any], Any]
    to_int: Callable[[Any], Any]


def _t(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=torch.float64)


TORCH = Ops(sqrt=torch.sqrt, log=torch.log, cos=torch.cos, abs=torch.abs, floor=torch.floor, ceil=torch.ceil,
            clamp=torch.clamp, minimum=lambda a, b: torch.minimum(_t(a), _t(b)),
            maximum=lambda a, b: torch.maximum(_t(a), _t(b)), to_int=lambda x: x.long())
NUMPY = Ops(sqrt=np.sqrt, log=np.log, cos=np.cos, abs=np.abs, floor=np.floor, ceil=np.ceil, clamp=np.clip,
            minimum=np.minimum, maximum=np.maximum, to_int=lambda x: np.asarray(x).astype(np.int64))


# ---------------------------------------------------------------- fixations (SPEC §2)


def scaled(px_at_96: float, side: int) -> int:
    """A pixel size given at the paper's 96 px (:data:`REFERENCE_SIDE`), for a view of ``side`` px."""
    return int(round(px_at_96 * side / REFERENCE_SIDE))


def uniform_border(px_at_96: float, side: int) -> int:
    """The border of a uniform fixation draw: scaled with the side, and at most ``(side - 1) // 2`` so at
    least one pixel stays inside."""
    return max(0, min(scaled(px_at_96, side), (side - 1) // 2))


def uniform_coordinate(u: Any, side: int, border: int, xp: Ops = TORCH) -> Any:
    """A pixel index uniform over ``border .. side - 1 - border`` from a uniform ``u`` in [0, 1) (as a float)."""
    span = side - 2 * border
    return border + xp.minimum(xp.floor(u * span), span - 1.0)


def uniform_fixations(u: torch.Tensor, h: int, w: int, border: int) -> torch.Tensor:
    """(row, col) uniform over the pixels at least ``border`` from the edge; ``u`` is B×2 in [0, 1)."""
    rb, cb = min(border, (h - 1) // 2), min(border, (w - 1) // 2)
    return torch.stack([uniform_coordinate(u[:, 0], h, rb), uniform_coordinate(u[:, 1], w, cb)], dim=1).long()


def fixation_logits(saliency: torch.Tensor, temperature: float, bdr: int, eps: float) -> torch.Tensor:
    """``log(m + eps) / T`` with a ``bdr``-pixel border set to -inf; ``saliency`` is B×H×W, >= 0."""
    logits = torch.log(saliency.clamp_min(0) + eps) / max(temperature, 1e-12)
    return _mask_border(logits, bdr)


def _mask_border(logits: torch.Tensor, border: int) -> torch.Tensor:
    h, w = logits.shape[-2:]
    border = min(border, (h - 1) // 2, (w - 1) // 2)
    if border <= 0:
        return logits
    out = torch.full_like(logits, -math.inf)
    out[..., border:h - border, border:w - border] = logits[..., border:h - border, border:w - border]
    return out


def sample_fixations(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Draw one (row, col) per map from p ∝ exp(logits), by inverse CDF of uniforms ``u`` (B,).

    Stable softmax (subtract the maximum first), so T = 0.01 works; T = 0 is the arg-max, which the
    caller takes with :func:`argmax_fixations`.
    """
    b, h, w = logits.shape
    flat = logits.reshape(b, -1)
    p = torch.exp(flat - flat.max(dim=1, keepdim=True).values)
    cdf = torch.cumsum(p, dim=1)
    target = (u.to(cdf) * cdf[:, -1]).unsqueeze(1)
    idx = torch.searchsorted(cdf, target).clamp_max(h * w - 1).squeeze(1)
    return torch.stack([idx // w, idx % w], dim=1)


def argmax_fixations(logits: torch.Tensor) -> torch.Tensor:
    b, h, w = logits.shape
    idx = logits.reshape(b, -1).argmax(dim=1)
    return torch.stack([idx // w, idx % w], dim=1)


# ---------------------------------------------------------------- crops, jitter, blur (SPEC §3)


def centre_box(h: Any, w: Any, fraction: float, xp: Ops = NUMPY) -> tuple[Any, Any, Any, Any]:
    """(top, left, side, side) of the centred square of ``fraction`` × the short side, rounded half up
    (resize-then-centre-crop geometry; eval views, and magnification's input)."""
    side = xp.maximum(xp.floor(xp.minimum(h, w) * fraction + 0.5), 1.0)
    return xp.floor((h - side) * 0.5), xp.floor((w - side) * 0.5), side, side


def jitter_range(strength: float) -> tuple[float, float]:
    """SimCLR's brightness/contrast/saturation factor range U[max(0, 1 - x), 1 + x]."""
    return max(0.0, 1.0 - strength), 1.0 + strength


def hue_range(strength: float) -> tuple[float, float]:
    """Hue shift range U[-h, h], in turns."""
    return -strength, strength


def hue_degrees(shift: Any) -> Any:
    """A hue shift in turns (``ViewParams.jitter[:, 3]``) in DALI's unit (``fn.hsv``, ``fn.color_twist``): degrees."""
    return shift * 360.0


def blur_kernel_size(side: int, fraction: float) -> int:
    """SimCLR's kernel: ``fraction`` of the side, made odd."""
    k = max(1, int(side * fraction))
    return k if k % 2 else k + 1


def blur_kernel_sizes(sigma: Any, side: int, fraction: float, xp: Ops = TORCH) -> Any:
    """Each image's SimCLR kernel: :func:`blur_kernel_size`, cut to the odd width that covers
    ±:data:`BLUR_TRUNCATE`·σ. The dropped taps hold under 1e-4 of the mass (a uint8 step is 4e-3), and
    with σ in [0.1, 2] they are most of the work at 224 px (23 taps where 3 to 17 carry the blur)."""
    return xp.to_int(xp.minimum(2.0 * xp.ceil(sigma * BLUR_TRUNCATE) + 1.0, float(blur_kernel_size(side, fraction))))


def solarize(x: Any, threshold: float, one: float = 1.0) -> Any:
    """BYOL's and DINO's solarisation: ``one - x`` where ``x >= threshold·one``, else ``x`` (``one`` = 1 for
    [0, 1] floats, 255 for uint8 values; PIL's ``solarize(img, 128)``). Written as arithmetic,
    x + [x >= t]·(one − 2x), so the DALI graph evaluates this same line on DataNodes."""
    return x + (x >= threshold * one) * (one - 2.0 * x)


# ---------------------------------------------------------------- the fused colour twist (jitter.order=fixed)

#: RGB -> YIQ as DALI's ``color_twist`` writes it (``dali/operators/image/color/color_twist.h``, three decimals);
#: the way back is this matrix's exact inverse, as DALI 2.4 computes it (``color_twist`` with neutral factors is
#: the identity), so the torch backend's fused jitter is DALI's matrix, not a re-derivation of it.
YIQ_FROM_RGB = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.321), (0.211, -0.523, 0.311))
#: ``color_twist``'s contrast centre on uint8 images, 128 (half the range), in [0, 1] units.
TWIST_CENTRE = 128 / 255
#: The fused order as ``ViewParams.jitter_order`` records it (op indices of ``ViewParams.jitter``): saturation
#: and hue (both act on YIQ's chroma plane and commute), then contrast, then brightness.
TWIST_ORDER = (2, 3, 1, 0)


def twist_matrix(factors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DALI's ``color_twist`` as one affine map per image on RGB in [0, 1]: x -> clip(M x + t), (M B×3×3, t B).

    ``factors`` B×4: brightness b, contrast c, saturation s, hue shift h (turns), ``ViewParams.jitter``'s columns.
    M = b·c · YIQ_FROM_RGB⁻¹ · R(h) · diag(1, s, s) · YIQ_FROM_RGB, with R(h) the rotation of the (I, Q) plane by
    h turns, and t = b·(1 − c)·:data:`TWIST_CENTRE`: saturation and hue in YIQ, contrast around mid-grey,
    brightness, one clip at the end (the order :data:`TWIST_ORDER` names).
    """
    b, c, s, h = factors.to(torch.float64).unbind(dim=1)
    theta = h * (2.0 * math.pi)
    cos, sin, one, zero = s * torch.cos(theta), s * torch.sin(theta), torch.ones_like(s), torch.zeros_like(s)
    chroma = torch.stack([torch.stack([one, zero, zero], dim=-1), torch.stack([zero, cos, sin], dim=-1),
                          torch.stack([zero, -sin, cos], dim=-1)], dim=-2)
    to_yiq = torch.tensor(YIQ_FROM_RGB, dtype=torch.float64, device=factors.device)
    return (b * c).view(-1, 1, 1) * (torch.linalg.inv(to_yiq) @ chroma @ to_yiq), b * (1.0 - c) * TWIST_CENTRE


# ---------------------------------------------------------------- foveation (SPEC §4)


def plateau(x: Any, xp: Ops = TORCH) -> Any:
    """The window g(x) of SPEC §4: 1 on |x| < 1/4, cos² flanks to 0 at |x| = 3/4; shifted copies sum to 1.

    Written as cos²(π/2 · t), t = clamp((|x| − a)/(1 − 2a), 0, 1), a = :data:`PLATEAU_FLAT`, which
    equals SPEC's three pieces for a = 1/4 (1 − cos²(π(x − 3/4)) = cos²(π(x − 1/4)) on [1/4, 3/4])
    with one transcendental call, and still sums to 1 over shifted copies for any 0 < a < 1/2.
    """
    t = xp.clamp((xp.abs(x) - PLATEAU_FLAT) * (1.0 / (1.0 - 2.0 * PLATEAU_FLAT)), 0.0, 1.0)
    c = xp.cos(t * (0.5 * math.pi))
    return c * c


def degrees_per_pixel(h: int, w: int, field_deg: float) -> float:
    return field_deg / math.sqrt(h * h + w * w)


def fovea_e0(area: Any, h: int, w: int, d: float, xp: Ops = TORCH) -> Any:
    """Fovea eccentricity e0 = r·d, r = sqrt(H·W·a/π), for area fractions ``area``."""
    return xp.sqrt(area * (h * w / math.pi)) * d


def ring_position(rows: Any, cols: Any, fix_row: Any, fix_col: Any, e0: Any, d: float, spacing: float,
                  xp: Ops = TORCH) -> Any:
    """z = (log e − log e0)/s for every pixel: ring n's mask is g(z − (n+1)), the fovea's g(clamp(z, 0, 1))."""
    dr, dc = rows - fix_row, cols - fix_col
    e = xp.sqrt(dr * dr + dc * dc) * d
    return (xp.log(xp.maximum(e, ECCENTRICITY_FLOOR * d)) - xp.log(e0)) * (1.0 / spacing)


def fovea_mask(z: Any, xp: Ops = TORCH) -> Any:
    """Mf = g(clamp(z, 0, 1))."""
    return plateau(xp.clamp(z, 0.0, 1.0), xp)


def ring_mask(z: Any, n: int, xp: Ops = TORCH) -> Any:
    """Mn = g(z − (n+1))."""
    return plateau(z - float(n + 1), xp)


def max_eccentricity(fix_row: Any, fix_col: Any, h: int, w: int, d: float, xp: Ops = TORCH) -> Any:
    """Eccentricity of the farthest corner pixel centre from a fixation."""
    dr = xp.maximum(fix_row, (h - 1) - fix_row)
    dc = xp.maximum(fix_col, (w - 1) - fix_col)
    return xp.sqrt(dr * dr + dc * dc) * d


def ring_count(e0: Any, e_max: Any, spacing: float, xp: Ops = TORCH) -> Any:
    """N = ceil((log e_max − log e0)/s + 1), at least 1 (ring N − 1 is always empty inside the image)."""
    return xp.maximum(xp.ceil((xp.log(e_max) - xp.log(e0)) * (1.0 / spacing) + 1.0), 1.0)


def max_rings(h: int, w: int, area_min: float, spacing: float, field_deg: float) -> int:
    """The most rings any image of H×W can need: the smallest fovea fixated in a corner."""
    d = degrees_per_pixel(h, w, field_deg)
    e0 = fovea_e0(area_min, h, w, d, NUMPY)
    return int(ring_count(e0, max_eccentricity(0.0, 0.0, h, w, d, NUMPY), spacing, NUMPY))


def ring_sigma(e0: Any, n: int, spacing: float, d: float, factor: float) -> Any:
    """σn in px = factor · e0 · exp((n+1)s) / d: proportional to the ring's radius."""
    return e0 * (factor * math.exp((n + 1) * spacing) / d)


def kernel_size(sigma: Any, xp: Ops = TORCH) -> Any:
    """k = int(3σ), +1 if even (the paper's rule; σ < 2/3 px gives k = 1, no blur)."""
    k = xp.to_int(xp.floor(sigma * KERNEL_SIGMAS))
    return k + 1 - k % 2


def gaussian_taps(sigma: torch.Tensor, k: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, B×width, each centred, zero outside its own odd size k (B,)."""
    x = torch.arange(width, dtype=torch.float64, device=sigma.device) - width // 2
    s = sigma.double().clamp_min(1e-12).unsqueeze(1)
    taps = torch.exp(-(x.unsqueeze(0) ** 2) / (2 * s * s))
    taps = torch.where(x.abs().unsqueeze(0) <= (k // 2).unsqueeze(1), taps, torch.zeros_like(taps))
    return (taps / taps.sum(dim=1, keepdim=True)).to(dtype)


# ---------------------------------------------------------------- cortical magnification (SPEC §5)


def magnified_radius(r: torch.Tensor, mode: str, fovea: float, softness: float, h: int, w: int,
                     exp_c: float = 1.5) -> torch.Tensor:
    """g(R): identity inside the fovea then quadratic (``radial_quad``), or ``radial_exp``."""
    if mode == "radial_quad":
        outer = (r + softness) ** 2 / (2 * (fovea + softness)) + fovea - (fovea + softness) / 2
        return torch.where(r <= fovea, r, outer)
    if mode == "radial_exp":
        r_hd = math.sqrt((h / 2) ** 2 + (w / 2) ** 2)
        return (torch.exp(exp_c * r / r_hd) - 1) / exp_c
    raise ValueError(f"unknown magnification mode {mode!r}; valid: radial_quad, radial_exp")


def magnification_offsets(h: int, w: int, mode: str, fovea: float, softness: float, exp_c: float = 1.5,
                          dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """g(R)/max g · (v, u)/R per output pixel, H×W×2 (row, col): the same for every image, so a
    backend computes it once and scales it by :func:`magnification_coef` per image.

    Output offsets u (cols), v (rows) sit at half-pixel positions around the centre.
    """
    v = (torch.arange(h, dtype=dtype, device=device) - h / 2 + 0.5).view(h, 1).expand(h, w)
    u = (torch.arange(w, dtype=dtype, device=device) - w / 2 + 0.5).view(1, w).expand(h, w)
    r = torch.sqrt(u * u + v * v)
    g = magnified_radius(r, mode, fovea, softness, h, w, exp_c)
    ratio = g / r.clamp_min(1e-12) / g.max()
    return torch.stack([ratio * v, ratio * u], dim=-1)


def magnification_coef(fix_row: Any, fix_col: Any, rho: Any, h: int, w: int, xp: Ops = TORCH) -> Any:
    """Dmax · sqrt(ρ), Dmax the distance from the fixation to the farthest image corner (pixel edges:
    (-0.5, -0.5) ... (H-0.5, W-0.5)); times :func:`magnification_offsets` it is the sampling offset."""
    dr = xp.maximum(fix_row + 0.5, (h - 0.5) - fix_row)
    dc = xp.maximum(fix_col + 0.5, (w - 0.5) - fix_col)
    return xp.sqrt(dr * dr + dc * dc) * xp.sqrt(rho)


def magnification_positions(fix: torch.Tensor, rho: torch.Tensor, h: int, w: int, mode: str, fovea: float,
                            softness: float, exp_c: float = 1.5, dtype: torch.dtype = torch.float32
                            ) -> torch.Tensor:
    """Input positions (row, col) sampled by every output pixel, B×H×W×2 (input = output size):
    f + coef·g(R)·(v, u)/R with coef = Dmax / max g · sqrt(ρ)."""
    offsets = magnification_offsets(h, w, mode, fovea, softness, exp_c, dtype, fix.device)
    fr, fc = fix[:, 0].to(dtype), fix[:, 1].to(dtype)
    coef = magnification_coef(fr, fc, rho.to(dtype), h, w).view(-1, 1, 1, 1)
    return torch.stack([fr, fc], dim=1).view(-1, 1, 1, 2) + coef * offsets


def to_grid_sample(pos: torch.Tensor, h_in: int, w_in: int) -> torch.Tensor:
    """(row, col) pixel positions -> ``grid_sample`` grid (x, y) in [-1, 1], ``align_corners=False``."""
    y = (2 * pos[..., 0] + 1) / h_in - 1
    x = (2 * pos[..., 1] + 1) / w_in - 1
    return torch.stack([x, y], dim=-1)
