"""The maths of fixations, foveation and cortical magnification, once, for every backend.

Backends differ only in the kernel that applies these numbers (a grouped convolution and
``grid_sample`` in torch, ``gaussian_blur`` and ``experimental.remap`` in DALI); the masks, ring
sigmas, kernel sizes, warp grids and fixation distribution come from here (SPEC.md §2, §4, §5).
Everything is batched torch and works in float32 or float64, on CPU or CUDA.

Coordinates: (row, col) pixel indices, pixel ``i``'s centre at ``i``; a fixation sits on a pixel
centre. ``grid_sample`` is called with ``align_corners=False``, so pixel ``i`` of a side of ``n``
has normalised coordinate ``(2i + 1)/n - 1`` (see :func:`to_grid_sample`).
"""

from __future__ import annotations

import math

import torch

# ---------------------------------------------------------------- fixations (SPEC §2)


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

    Stable softmax (subtract the maximum first), so T = 0.01 works; a temperature of 0 (logits
    all -inf but the arg-max is handled by the caller via :func:`argmax_fixations`).
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


def uniform_fixations(u: torch.Tensor, h: int, w: int, border: int) -> torch.Tensor:
    """(row, col) uniform over the pixels at least ``border`` from the edge; ``u`` is B×2 in [0, 1)."""
    rb, cb = min(border, (h - 1) // 2), min(border, (w - 1) // 2)
    rows = rb + torch.floor(u[:, 0] * (h - 2 * rb)).long().clamp_max(h - 2 * rb - 1)
    cols = cb + torch.floor(u[:, 1] * (w - 2 * cb)).long().clamp_max(w - 2 * cb - 1)
    return torch.stack([rows, cols], dim=1)


def scaled(px_at_96: float, side: int, reference: int = 96) -> int:
    """A pixel size given at the paper's 96 px, for a view of ``side`` px."""
    return int(round(px_at_96 * side / reference))


# ---------------------------------------------------------------- foveation (SPEC §4)


def plateau(x: torch.Tensor) -> torch.Tensor:
    """The window g(x) of SPEC §4: 1 on |x| < 1/4, cos² flanks to 0 at |x| = 3/4; shifted copies sum to 1.

    Written as cos²(π/2 · clamp(2|x| − 1/2, 0, 1)), which equals SPEC's three pieces
    (1 − cos²(π(x − 3/4)) = cos²(π(x − 1/4)) on [1/4, 3/4]) with one transcendental call.
    """
    return torch.cos((0.5 * math.pi) * (2 * x.abs() - 0.5).clamp(0, 1)) ** 2


def degrees_per_pixel(h: int, w: int, field_deg: float = 20.0) -> float:
    return field_deg / math.sqrt(h * h + w * w)


def fovea_e0(area: torch.Tensor, h: int, w: int, d: float) -> torch.Tensor:
    """Fovea eccentricity e0 = r·d, r = sqrt(H·W·a/π), for area fractions ``area`` (B,)."""
    return torch.sqrt(h * w * area / math.pi) * d


def log_eccentricity(fix: torch.Tensor, h: int, w: int, d: float, dtype: torch.dtype) -> torch.Tensor:
    """log e(p) for every pixel, B×H×W (e clamped away from 0 so the fixation pixel is finite)."""
    rows = torch.arange(h, dtype=dtype, device=fix.device).view(1, h, 1)
    cols = torch.arange(w, dtype=dtype, device=fix.device).view(1, 1, w)
    fr, fc = fix[:, 0].to(dtype).view(-1, 1, 1), fix[:, 1].to(dtype).view(-1, 1, 1)
    dist = torch.sqrt((rows - fr) ** 2 + (cols - fc) ** 2)
    return torch.log((dist * d).clamp_min(1e-6 * d))


def max_eccentricity(fix: torch.Tensor, h: int, w: int, d: float) -> torch.Tensor:
    """Eccentricity of the farthest corner pixel centre from each fixation (B,)."""
    fr, fc = fix[:, 0].double(), fix[:, 1].double()
    dr = torch.maximum(fr, (h - 1) - fr)
    dc = torch.maximum(fc, (w - 1) - fc)
    return torch.sqrt(dr * dr + dc * dc) * d


def ring_count(e0: torch.Tensor, e_max: torch.Tensor, spacing: float) -> torch.Tensor:
    """N = ceil((log e_max − log e0)/s + 1) (B,), at least 1."""
    n = torch.ceil((torch.log(e_max.double()) - torch.log(e0.double())) / spacing + 1)
    return n.clamp_min(1).long()


def ring_sigma(e0: torch.Tensor, n: int, spacing: float, d: float, factor: float = 0.06) -> torch.Tensor:
    """σn in px = factor · e0 · exp((n+1)s) / d: proportional to the ring's radius."""
    return factor * e0.double() * math.exp((n + 1) * spacing) / d


def kernel_size(sigma: torch.Tensor) -> torch.Tensor:
    """k = int(3σ), +1 if even (the paper's rule; σ < 2/3 px gives k = 1, no blur)."""
    k = torch.floor(3 * sigma.double()).long()
    return torch.where(k % 2 == 0, k + 1, k)


def gaussian_taps(sigma: torch.Tensor, k: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, B×width, each centred, zero outside its own odd size k (B,)."""
    x = torch.arange(width, dtype=torch.float64, device=sigma.device) - width // 2
    s = sigma.double().clamp_min(1e-12).unsqueeze(1)
    taps = torch.exp(-(x.unsqueeze(0) ** 2) / (2 * s * s))
    taps = torch.where(x.abs().unsqueeze(0) <= (k // 2).unsqueeze(1), taps, torch.zeros_like(taps))
    return (taps / taps.sum(dim=1, keepdim=True)).to(dtype)


def fovea_mask(log_e: torch.Tensor, log_e0: torch.Tensor, spacing: float) -> torch.Tensor:
    """Mf = g(clamp((log e − log e0)/s, 0, 1)), B×H×W."""
    return plateau(((log_e - log_e0.view(-1, 1, 1)) / spacing).clamp(0, 1))


def ring_mask(log_e: torch.Tensor, log_e0: torch.Tensor, n: int, spacing: float) -> torch.Tensor:
    """Mn = g((log e − log e0 − (n+1)s)/s), B×H×W."""
    return plateau((log_e - log_e0.view(-1, 1, 1) - (n + 1) * spacing) / spacing)


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


def magnification_positions(fix: torch.Tensor, rho: torch.Tensor, h: int, w: int, mode: str, fovea: float,
                            softness: float, exp_c: float = 1.5, dtype: torch.dtype = torch.float32
                            ) -> torch.Tensor:
    """Input positions (row, col) sampled by every output pixel, B×H×W×2 (input = output size).

    Output offsets u (cols), v (rows) sit at half-pixel positions around the centre; the input
    is read at f + coef·g(R)·(v, u)/R with coef = Dmax / max g · sqrt(ρ), Dmax the distance from
    the fixation to the farthest image corner (pixel edges: (-0.5, -0.5) ... (H-0.5, W-0.5)).
    """
    dev = fix.device
    v = (torch.arange(h, dtype=dtype, device=dev) - h / 2 + 0.5).view(h, 1).expand(h, w)
    u = (torch.arange(w, dtype=dtype, device=dev) - w / 2 + 0.5).view(1, w).expand(h, w)
    r = torch.sqrt(u * u + v * v)
    g = magnified_radius(r, mode, fovea, softness, h, w, exp_c)
    ratio = g / r.clamp_min(1e-12)
    fr, fc = fix[:, 0].to(dtype), fix[:, 1].to(dtype)
    dr = torch.maximum(fr + 0.5, h - 0.5 - fr)
    dc = torch.maximum(fc + 0.5, w - 0.5 - fc)
    coef = torch.sqrt(dr * dr + dc * dc) / g.max() * torch.sqrt(rho.to(dtype))
    c = coef.view(-1, 1, 1)
    rows = fr.view(-1, 1, 1) + c * ratio * v
    cols = fc.view(-1, 1, 1) + c * ratio * u
    return torch.stack([rows, cols], dim=-1)


def to_grid_sample(pos: torch.Tensor, h_in: int, w_in: int) -> torch.Tensor:
    """(row, col) pixel positions -> ``grid_sample`` grid (x, y) in [-1, 1], ``align_corners=False``."""
    y = (2 * pos[..., 0] + 1) / h_in - 1
    x = (2 * pos[..., 1] + 1) / w_in - 1
    return torch.stack([x, y], dim=-1)
