"""Float64 NumPy references of foveation (SPEC §4) and cortical magnification (SPEC §5).

Written straight from SPEC.md, pixel by pixel where that is clearer, and sharing no code with
``headcam.pipelines``: the backends are tested against these. Images are H×W×C float64.
Coordinates (row, col), pixel i's centre at i.
"""

from __future__ import annotations

import math

import numpy as np


def plateau(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    rise = (x > -0.75) & (x <= -0.25)
    out[rise] = np.cos(np.pi * (x[rise] + 0.25)) ** 2
    out[np.abs(x) < 0.25] = 1.0
    fall = (x >= 0.25) & (x <= 0.75)
    out[fall] = 1 - np.cos(np.pi * (x[fall] - 0.75)) ** 2
    return out


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """k = int(3σ) (+1 if even), normalised taps, separable, reflect padding of k//2 (torch's 'reflect')."""
    k = int(3 * sigma)
    if k % 2 == 0:
        k += 1
    if k == 1:
        return img.copy()
    x = np.arange(k) - k // 2
    taps = np.exp(-(x**2) / (2 * sigma * sigma))
    taps /= taps.sum()
    p = k // 2
    h, w = img.shape[:2]
    padded = np.pad(img, ((0, 0), (p, p), (0, 0)), mode="reflect")
    rows = sum(taps[t] * padded[:, t:t + w] for t in range(k))
    padded = np.pad(rows, ((p, p), (0, 0), (0, 0)), mode="reflect")
    return sum(taps[t] * padded[t:t + h] for t in range(k))


def foveation_masks(h: int, w: int, fix: tuple[int, int], area: float, s: float = 0.2, field: float = 20.0
                    ) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    """(fovea mask, ring masks for n = 0..N-1, ring sigmas in px)."""
    d = field / math.sqrt(h * h + w * w)
    e0 = math.sqrt(h * w * area / math.pi) * d
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    e = d * np.hypot(rows - fix[0], cols - fix[1])
    log_e = np.log(np.maximum(e, 1e-6 * d))
    corners = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)]
    e_max = d * max(math.hypot(r - fix[0], c - fix[1]) for r, c in corners)
    n_rings = max(1, math.ceil((math.log(e_max) - math.log(e0)) / s + 1))
    fovea = plateau(np.clip((log_e - math.log(e0)) / s, 0, 1))
    rings = [plateau((log_e - math.log(e0) - (n + 1) * s) / s) for n in range(n_rings)]
    sigmas = [0.06 * e0 * math.exp((n + 1) * s) / d for n in range(n_rings)]
    return fovea, rings, sigmas


def foveate(img: np.ndarray, fix: tuple[int, int], area: float, s: float = 0.2) -> np.ndarray:
    h, w = img.shape[:2]
    fovea, rings, sigmas = foveation_masks(h, w, fix, area, s)
    out = fovea[..., None] * img
    for mask, sigma in zip(rings, sigmas, strict=True):
        out = out + mask[..., None] * gaussian_blur(img, sigma)
    return np.clip(out, 0, 1)


def g_radius(r: float, mode: str, fovea: float, softness: float, h: int, w: int, c: float = 1.5) -> float:
    if mode == "radial_quad":
        if r <= fovea:
            return r
        return (r + softness) ** 2 / (2 * (fovea + softness)) + fovea - (fovea + softness) / 2
    r_hd = math.sqrt((h / 2) ** 2 + (w / 2) ** 2)
    return (math.exp(c * r / r_hd) - 1) / c


def bilinear_zeros(img: np.ndarray, y: float, x: float) -> np.ndarray:
    """Bilinear sample at pixel-centre coordinates; taps outside the image count as zero."""
    h, w = img.shape[:2]
    y0, x0 = math.floor(y), math.floor(x)
    out = np.zeros(img.shape[2:])
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out = out + wy * wx * img[yy, xx]
    return out


def magnify(img: np.ndarray, fix: tuple[int, int], rho: float, mode: str = "radial_quad", fovea: float = 20.0,
            softness: float = 20.0) -> np.ndarray:
    h, w = img.shape[:2]
    offs_v = [i - h / 2 + 0.5 for i in range(h)]
    offs_u = [j - w / 2 + 0.5 for j in range(w)]
    g_max = max(g_radius(math.hypot(u, v), mode, fovea, softness, h, w) for u in offs_u for v in offs_v)
    corners = [(-0.5, -0.5), (-0.5, w - 0.5), (h - 0.5, -0.5), (h - 0.5, w - 0.5)]
    d_max = max(math.hypot(r - fix[0], c - fix[1]) for r, c in corners)
    coef = d_max / g_max * math.sqrt(rho)
    out = np.zeros_like(img)
    for i, v in enumerate(offs_v):
        for j, u in enumerate(offs_u):
            r = math.hypot(u, v)
            scale = coef * g_radius(r, mode, fovea, softness, h, w) / r if r > 0 else 0.0
            out[i, j] = bilinear_zeros(img, fix[0] + scale * v, fix[1] + scale * u)
    return out


def fixation_probabilities(m: np.ndarray, temperature: float, bdr: int, eps: float) -> np.ndarray:
    """p ∝ (m + eps)^(1/T) inside a border of ``bdr`` px, 0 on it (computed in logs, max subtracted)."""
    logits = np.log(m + eps) / temperature
    inside = np.zeros(m.shape, bool)
    inside[bdr:m.shape[0] - bdr, bdr:m.shape[1] - bdr] = True
    logits = np.where(inside, logits, -np.inf)
    p = np.exp(logits - logits[inside].max())
    return p / p.sum()
