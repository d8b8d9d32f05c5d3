"""DALI graph pieces shared by the recipe pipelines: one view of a recipe, as DALI operators.

Input: encoded JPEGs (the reader's ``jpg`` output). Output: a normalised CHW float view and the
drawn parameters (crop shape, jitter factors, fixation...), returned as extra pipeline outputs so
tests can compare their distributions with the torch backend's.

What differs from the torch backend, and why:

- Colour jitter runs in a fixed order (brightness·contrast, then saturation·hue in one
  ``fn.hsv``), not a random order per image: DALI has no per-sample op order. ``brightness_contrast``
  centres contrast on mid-grey, torchvision on the image's mean grey. Factor distributions match.
- The flip is applied last, in ``crop_mirror_normalize``: every op before it is pointwise or
  symmetric, so the result is the same, and fixations are drawn uniformly (symmetric).
- Foveation uses the same masks and sigmas (SPEC §4) from DALI arithmetic, blurring with
  ``fn.gaussian_blur`` per ring up to the most rings any image can need.
- Cortical magnification is ``fn.experimental.remap`` (GPU only); saliency fixations and
  temporal pairs are torch-backend only (:data:`UNSUPPORTED` explains each).
"""

from __future__ import annotations

import math

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.math as dmath
import nvidia.dali.types as types

from headcam.pipelines import maths
from headcam.pipelines.spec import REFERENCE_SIDE, AugmentSpec

UNSUPPORTED = {
    "saliency": "saliency fixations need a per-image inverse-CDF draw that DALI lacks; use backend='torch'",
    "temporal": "temporal pairs need clip-aware pairing of samples; use backend='torch'",
    "magnification_cpu": "cortical magnification uses fn.experimental.remap, which DALI has only on GPU; "
                         "use backend='torch' on CPU",
}


def _float(node):
    return fn.cast(node, dtype=types.FLOAT)


def _coin(p: float):
    return _float(fn.random.coin_flip(probability=float(p)))


def _uniform(lo: float, hi: float):
    """U[lo, hi) per sample; a degenerate range (eval's zero jitter) is the constant ``lo``."""
    if hi <= lo:
        return _coin(0.0) + float(lo)
    return fn.random.uniform(range=[float(lo), float(hi)])


def crop(jpegs, spec: AugmentSpec, size: int, decoder_device: str) -> tuple:
    """Decode + crop + resize to size×size; returns (image HWC uint8, crop shape HW of the source)."""
    shape = fn.peek_image_shape(jpegs)
    if spec.random_crop and not spec.magnification.enabled:
        anchor, window = fn.random_crop_generator(shape, random_area=list(spec.crop.scale),
                                                  random_aspect_ratio=list(spec.crop.ratio))
    else:  # centre square of a fraction of the short side (eval resize + centre crop; magnification input)
        frac = 1.0 if spec.magnification.enabled else spec.resize_ratio
        hw = _float(shape)
        h, w = hw[0], hw[1]
        side = dmath.floor(dmath.min(h, w) * frac + 0.5)
        window = fn.stack(side, side)
        anchor = fn.stack(dmath.floor((h - side) * 0.5), dmath.floor((w - side) * 0.5))
    images = fn.decoders.image_slice(jpegs, anchor, window, axis_names="HW", device=decoder_device,
                                     output_type=types.RGB, normalized_anchor=False, normalized_shape=False)
    return fn.resize(images, size=[size, size], antialias=True), window


def colour(images, spec: AugmentSpec) -> tuple:
    """Jitter with probability p (fixed order), grayscale with its p; returns (images, factors dict)."""
    j = spec.jitter
    on = _coin(j.p)
    b = 1.0 + on * (_uniform(max(0.0, 1 - j.brightness), 1 + j.brightness) - 1.0)
    c = 1.0 + on * (_uniform(max(0.0, 1 - j.contrast), 1 + j.contrast) - 1.0)
    s = 1.0 + on * (_uniform(max(0.0, 1 - j.saturation), 1 + j.saturation) - 1.0)
    h = on * _uniform(-j.hue, j.hue)
    gray = _coin(spec.grayscale_p)
    images = fn.brightness_contrast(images, brightness=b, contrast=c)
    images = fn.hsv(images, hue=h * 360.0, saturation=s * (1.0 - gray))
    return images, {"brightness": b, "contrast": c, "saturation": s, "hue": h, "gray": gray, "jitter_on": on}


def blur(images, spec: AugmentSpec, size: int):
    """SimCLR blur with probability p: kernel 10% of the side (odd), sigma ~ U[sigma] (else ~identity)."""
    k = max(1, int(size * spec.blur.kernel_frac))
    k = k if k % 2 else k + 1
    on = _coin(spec.blur.p)
    sigma = on * _uniform(*spec.blur.sigma) + (1.0 - on) * 1e-3
    return fn.gaussian_blur(images, window_size=k, sigma=sigma), sigma


def uniform_fixation(size: int, border_at_96: float) -> tuple:
    """(row, col) floats on pixel centres, uniform inside the border (maths.uniform_fixations' rule)."""
    border = min(maths.scaled(border_at_96, size, REFERENCE_SIDE), (size - 1) // 2)
    span = size - 2 * border
    row = border + dmath.min(dmath.floor(_uniform(0.0, 1.0) * span), span - 1.0)
    col = border + dmath.min(dmath.floor(_uniform(0.0, 1.0) * span), span - 1.0)
    return row, col


def _grids(size: int) -> tuple:
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    return types.Constant(rows), types.Constant(cols)


def foveate(images_float, row, col, area, size: int, spacing: float, factor: float, field_deg: float,
            area_min: float, gpu: bool = False):
    """SPEC §4 in DALI arithmetic on an HWC float image in [0, 1] (square, ``size``).

    Masks are computed on the CPU from per-sample scalars (argument inputs must stay on the CPU)
    and moved to the GPU with the image when ``gpu``."""
    d = maths.degrees_per_pixel(size, size, field_deg)
    rows, cols = _grids(size)
    e0 = dmath.sqrt(size * size * area / math.pi) * d
    dist = dmath.sqrt((rows - row) * (rows - row) + (cols - col) * (cols - col))
    z = (dmath.log(dmath.max(dist * d, 1e-6 * d)) - dmath.log(e0)) / spacing
    z = fn.expand_dims(z, axes=[2])
    if gpu:
        z = z.gpu()

    def plateau(x):
        t = dmath.clamp(2.0 * dmath.abs(x) - 0.5, 0.0, 1.0)
        cosine = dmath.cos(t * (0.5 * math.pi))
        return cosine * cosine

    out = plateau(dmath.clamp(z, 0.0, 1.0)) * images_float
    e0_min = math.sqrt(size * size * area_min / math.pi) * d
    n_max = math.ceil((math.log(math.sqrt(2) * (size - 1) * d) - math.log(e0_min)) / spacing + 1)
    for n in range(n_max - 1):
        sigma = factor * e0 * math.exp((n + 1) * spacing) / d
        k = fn.cast(dmath.floor(3.0 * sigma), dtype=types.INT32)  # DALI casts round to nearest: floor first
        k = k + 1 - k % 2
        blurred = fn.gaussian_blur(images_float, window_size=k, sigma=sigma, dtype=types.FLOAT)
        out = out + plateau(z - float(n + 1)) * blurred
    return dmath.clamp(out, 0.0, 1.0)


def magnification_maps(row, col, rho, size: int, mode: str, fovea: float, softness: float, exp_c: float) -> tuple:
    """(mapx, mapy) for ``fn.experimental.remap(pixel_origin="center")``: SPEC §5's sampling positions."""
    import torch

    one = torch.zeros((1, 2))
    # g(R)/R·u and g(R)/R·v are the same for every image: compute them once with the shared maths.
    unit = maths.magnification_positions(one, torch.ones(1), size, size, mode, fovea, softness, exp_c,
                                         dtype=torch.float64)[0].numpy()
    dv, du = unit[..., 0], unit[..., 1]  # coef·g(R)·(v, u)/R for a fixation at (0, 0) and ρ = 1
    # coef scales with Dmax(f) / Dmax(0, 0): rescale the unit offsets per image.
    d00 = math.hypot(size - 0.5, size - 0.5)
    dr = dmath.max(row + 0.5, size - 0.5 - row)
    dc = dmath.max(col + 0.5, size - 0.5 - col)
    scale = dmath.sqrt(dr * dr + dc * dc) / d00 * dmath.sqrt(rho)
    mapy = row + scale * types.Constant(dv.astype(np.float32))
    mapx = col + scale * types.Constant(du.astype(np.float32))
    return mapx, mapy


def normalise(images, spec: AugmentSpec, flip, float_input: bool):
    """Flip + (x − mean)/std + HWC→CHW, float32."""
    scale = 1.0 if float_input else 255.0
    return fn.crop_mirror_normalize(images, mirror=flip, dtype=types.FLOAT, output_layout="CHW",
                                    mean=[m * scale for m in spec.mean], std=[s * scale for s in spec.std])


def view(jpegs, spec: AugmentSpec, size: int, gpu: bool) -> tuple:
    """One augmented view and its parameters (a dict of DataNodes) for ``spec``."""
    images, window = crop(jpegs, spec, size, "mixed" if gpu else "cpu")
    images, params = colour(images, spec)
    params["window"] = window
    if spec.blur.p > 0 and not spec.foveation.enabled:
        images, params["blur_sigma"] = blur(images, spec, size)
    flip = fn.random.coin_flip(probability=float(spec.flip_p))
    params["flip"] = flip
    if not spec.needs_fixation:
        return normalise(images, spec, flip, float_input=False), params
    border = max(spec.foveation.border if spec.foveation.enabled else 0,
                 spec.magnification.border if spec.magnification.enabled else 0)
    row, col = uniform_fixation(size, border)
    params["fix_row"], params["fix_col"] = row, col
    images = _float(images) * (1.0 / 255.0)
    if spec.foveation.enabled:
        f = spec.foveation
        area = _uniform(*f.area)
        params["fovea_area"] = area
        images = foveate(images, row, col, area, size, f.spacing, f.blur_factor, f.field_deg, f.area[0], gpu)
    if spec.magnification.enabled:
        m = spec.magnification
        rho = _uniform(*m.cover_ratio)
        params["cover_ratio"] = rho
        scale = size / REFERENCE_SIDE if m.scale_with_side else 1.0
        mapx, mapy = magnification_maps(row, col, rho, size, m.mode, m.fovea * scale, m.softness * scale, m.exp_c)
        images = fn.experimental.remap(images, mapx.gpu(), mapy.gpu(), pixel_origin="center",
                                       interp=types.INTERP_LINEAR)
    return normalise(images, spec, flip, float_input=True), params
