"""DALI graph pieces shared by the recipe pipelines: one view's random parameters, and the view itself.

Parameters are DataNodes named and shaped as the rows of
:class:`headcam.pipelines.params.ViewParams` (``box``, ``flip``, ``jitter_on``, ``jitter``, ...):
:func:`draw` makes them with DALI's random ops, with the ranges and rules of
:mod:`headcam.pipelines.params` and :mod:`headcam.pipelines.maths`; a test can feed a
``ViewParams`` through ``fn.external_source`` instead, and :func:`view` cannot tell.
:func:`view` applies them with DALI kernels; every formula it needs per sample (centre box,
fixation, foveation masks, ring sigmas and kernel sizes, magnification scale) is the shared one
from :mod:`~headcam.pipelines.maths`, evaluated on DataNodes through :data:`DALI`.

Ops that are off for a sample are skipped, not blended: the pipeline is built with
``enable_conditionals=True`` and ``if on:`` runs an op only on the samples that draw it (and an op
with probability 0 or 1 is left out of, or put straight into, the graph).

What differs from the torch backend, and why (``tests/pipelines/test_parity.py`` measures each):

- Nothing in the jitter's order or centre: with ``jitter.order=random`` each sample runs the four ops
  in its own drawn order (``jitter_order``, one of the 24 permutations; step k runs the op at position
  k, chosen by an ``if`` chain), and contrast is centred on the image's mean grey (:data:`maths.LUMA`),
  as in torchvision. ``jitter.order=fixed`` is one ``fn.color_twist`` per sample, whose matrix the
  torch backend builds with :func:`maths.twist_matrix`, hue included.
- With ``jitter.order=random``, hue is rotated by ``fn.hsv`` in YIQ space; torchvision rotates it in
  HSV. The two agree at shift 0 and in distribution, not pixel for pixel.
- Colour ops and the Gaussian blur run on uint8 (rounded after each op); the torch backend works
  in float. Foveation and magnification run in float in both.
- The flip is applied last, in ``crop_mirror_normalize``: every op before it is pointwise or
  mirror-symmetric, and the fixation is mirrored into the unflipped frame, so the result is the same.
- Solarisation is :func:`maths.solarize` in DALI arithmetic, on uint8 (exact) or, after foveation, on floats.
- Cortical magnification is ``fn.experimental.remap`` (GPU only); saliency fixations and
  temporal pairs are torch-backend only (:data:`UNSUPPORTED` explains each).
"""

from __future__ import annotations

import itertools

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.math as dmath
import nvidia.dali.types as types
import torch

from headcam.pipelines import maths, params
from headcam.pipelines.spec import AugmentSpec, FoveationSpec

UNSUPPORTED = {
    "saliency": "saliency fixations need a per-image inverse-CDF draw that DALI lacks; use backend='torch'",
    "temporal": "temporal pairs need clip-aware pairing of samples; use backend='torch'",
    "magnification_cpu": "cortical magnification uses fn.experimental.remap, which DALI has only on GPU; "
                         "use backend='torch' on CPU",
}

#: The shared formulas of :mod:`headcam.pipelines.maths`, evaluated on DALI DataNodes.
DALI = maths.Ops(sqrt=dmath.sqrt, log=dmath.log, cos=dmath.cos, abs=dmath.abs, floor=dmath.floor,
                 ceil=dmath.ceil, clamp=dmath.clamp, minimum=dmath.min, maximum=dmath.max,
                 to_int=lambda x: fn.cast(x, dtype=types.INT32))

#: Every order of the four jitter ops (brightness, contrast, saturation, hue), one drawn per sample.
JITTER_ORDERS = np.array(list(itertools.permutations(range(4))), dtype=np.int32)

#: The ``ViewParams`` fields a DALI view carries: all of them.
PARAMS = ("box", "flip", "jitter_on", "jitter", "jitter_order", "gray", "blur_on", "blur_sigma", "fovea_area",
          "cover_ratio", "fix_u", "solarize_on")


def _float(node):
    return fn.cast(node, dtype=types.FLOAT)


def _coin(p: float):
    return fn.random.coin_flip(probability=float(p), dtype=types.BOOL)


def _uniform(lo: float, hi: float):
    """U[lo, hi) per sample; a degenerate range (eval's zero jitter) is the constant ``lo``."""
    if hi <= lo:
        return _float(_coin(0.0)) + float(lo)
    return fn.random.uniform(range=[float(lo), float(hi)])


def _jitter_order(spec: AugmentSpec):
    """One of :data:`JITTER_ORDERS` per sample, or the fused order (:data:`maths.TWIST_ORDER`) when it is fixed."""
    if spec.jitter.order == "fixed":
        return types.Constant(np.array(maths.TWIST_ORDER, dtype=np.int32), device="cpu")
    return types.Constant(JITTER_ORDERS)[fn.random.choice(len(JITTER_ORDERS))]


def draw(spec: AugmentSpec, shape) -> dict:
    """One view's random parameters for source images of HWC ``shape`` (the ``ViewParams`` rows), under a
    view's spec (:attr:`params.ViewPlan.spec`)."""
    if spec.random_crop and not spec.magnification.enabled:
        anchor, window = fn.random_crop_generator(shape, random_area=list(spec.crop.scale),
                                                  random_aspect_ratio=list(spec.crop.ratio))
        box = _float(fn.cat(anchor, window))
    else:
        hw = _float(shape)
        box = fn.stack(*maths.centre_box(hw[0], hw[1], params.centre_fraction(spec), DALI))
    return {"box": box, "flip": _coin(spec.flip_p), "jitter_on": _coin(spec.jitter.p),
            "jitter": fn.stack(*[_uniform(lo, hi) for lo, hi in params.jitter_ranges(spec)]),
            "jitter_order": _jitter_order(spec),
            "gray": _coin(spec.grayscale_p), "blur_on": _coin(params.blur_probability(spec)),
            "blur_sigma": _uniform(*spec.blur.sigma), "fovea_area": _uniform(*spec.foveation.area),
            "cover_ratio": _uniform(*spec.magnification.cover_ratio),
            "fix_u": fn.stack(_uniform(0.0, 1.0), _uniform(0.0, 1.0)), "solarize_on": _coin(spec.solarize.p)}


def _maybe(on, probability: float, op, images):
    """``op(images)`` on the samples with ``on``; left out of the graph at probability 0, unconditional at 1."""
    if probability <= 0:
        return images
    if probability >= 1:
        return op(images)
    if on:
        images = op(images)
    return images


#: ``crop.interpolation`` -> DALI's resampling filter.
INTERP = {"bilinear": types.INTERP_LINEAR, "bicubic": types.INTERP_CUBIC}


def crop(source, box, size: int, gpu: bool, interpolation: str = "bilinear"):
    """The ``box`` (top, left, height, width) of each source, resized to size×size (antialiased, with the
    recipe's ``crop.interpolation``).

    GPU: ``source`` is the encoded JPEG and only the box is decoded (nvJPEG ROI decoding, once per
    view). CPU: ``source`` is the image decoded once per sample, and each view resizes its region.
    """
    anchor, window = box[0:2], box[2:4]
    if gpu:
        images = fn.decoders.image_slice(source, anchor, window, axis_names="HW", device="mixed",
                                         output_type=types.RGB, normalized_anchor=False, normalized_shape=False)
        return fn.resize(images, size=[size, size], antialias=True, interp_type=INTERP[interpolation])
    return fn.resize(source, size=[size, size], roi_start=anchor, roi_end=anchor + window, antialias=True,
                     interp_type=INTERP[interpolation])


def mean_grey(images):
    """The mean of the image's luma (torchvision's contrast centre), in the input's units, per sample."""
    m = fn.reductions.mean(images, axes=[0, 1], dtype=types.FLOAT)
    return m[0] * maths.LUMA[0] + m[1] * maths.LUMA[1] + m[2] * maths.LUMA[2]


def contrast(images, factor):
    """Blend with the mean grey by ``factor``: ``fn.contrast`` on CPU. On GPU the centre is a GPU value,
    which DALI ops cannot take as an argument, so the GPU runs :func:`blended_contrast`."""
    if images.device == "gpu":
        return blended_contrast(images, factor.gpu())
    return fn.contrast(images, contrast=factor, contrast_center=mean_grey(images))


def blended_contrast(images, factor):
    """``fn.contrast`` around the mean grey written in DALI arithmetic (any device; uint8 in and out)."""
    blended = dmath.clamp(_float(images) * factor + mean_grey(images) * (1.0 - factor), 0.0, 255.0)
    return fn.cast(blended, dtype=types.UINT8)  # DALI's cast rounds to nearest


def colour(images, p: dict, spec: AugmentSpec):
    """Jitter on the samples with ``jitter_on`` (each in its ``jitter_order``, or one fused ``fn.color_twist``
    when ``jitter.order`` is fixed), then grayscale on those with ``gray``; the op indices are
    ``ViewParams.jitter``'s columns."""
    j, order = p["jitter"], p["jitter_order"]

    def twist(x):
        return fn.color_twist(x, brightness=j[0], contrast=j[1], saturation=j[2], hue=maths.hue_degrees(j[3]))

    def jitter(x):
        for step in range(4):
            op = order[step]
            if op == 0:
                x = fn.brightness(x, brightness=j[0])
            elif op == 1:
                x = contrast(x, j[1])
            elif op == 2:
                x = fn.hsv(x, saturation=j[2])
            else:
                x = fn.hsv(x, hue=maths.hue_degrees(j[3]))
        return x

    images = _maybe(p["jitter_on"], spec.jitter.p, twist if spec.jitter.order == "fixed" else jitter, images)
    return _maybe(p["gray"], spec.grayscale_p, lambda x: fn.hsv(x, saturation=0.0), images)


def blur(images, p: dict, spec: AugmentSpec, size: int):
    """SimCLR's Gaussian blur (each image's kernel from :func:`maths.blur_kernel_sizes`) on the samples with
    ``blur_on``."""
    sigma = p["blur_sigma"]
    k = maths.blur_kernel_sizes(sigma, size, spec.blur.kernel_frac, DALI)
    return _maybe(p["blur_on"], params.blur_probability(spec),
                  lambda x: fn.gaussian_blur(x, window_size=k, sigma=sigma), images)


def solarize(images, p: dict, spec: AugmentSpec, float_input: bool):
    """:func:`maths.solarize` on the samples with ``solarize_on``: on [0, 1] floats, or on uint8 values
    (x >= 128 -> 255 - x, exact: every value stays an integer)."""

    def op(x):
        if float_input:
            return maths.solarize(x, spec.solarize.threshold)
        return fn.cast(maths.solarize(_float(x), spec.solarize.threshold, 255.0), dtype=types.UINT8)

    return _maybe(p["solarize_on"], spec.solarize.p, op, images)


def _grids(size: int) -> tuple:
    rows = torch.arange(size, dtype=torch.float32).view(size, 1).expand(size, size).numpy()
    return types.Constant(rows), types.Constant(rows.T.copy())


def foveate(images_float, row, col, area, size: int, f: FoveationSpec, gpu: bool = False):
    """SPEC §4 on an HWC float image in [0, 1] (square, ``size``), from :mod:`maths` evaluated on DataNodes.

    Rings run up to :func:`maths.max_rings`; a ring is blurred only for the samples for which it is not
    the last (empty) one (:func:`maths.ring_count`). Masks are computed on the CPU from per-sample
    scalars (argument inputs must stay on the CPU) and moved to the GPU with the image when ``gpu``.
    """
    d = maths.degrees_per_pixel(size, size, f.field_deg)
    rows, cols = _grids(size)
    e0 = maths.fovea_e0(area, size, size, d, DALI)
    n_rings = maths.ring_count(e0, maths.max_eccentricity(row, col, size, size, d, DALI), f.spacing, DALI)
    z = fn.expand_dims(maths.ring_position(rows, cols, row, col, e0, d, f.spacing, DALI), axes=[2])
    if gpu:
        z = z.gpu()
    out = maths.fovea_mask(z, DALI) * images_float
    for n in range(maths.max_rings(size, size, f.area[0], f.spacing, f.field_deg) - 1):
        sigma = maths.ring_sigma(e0, n, f.spacing, d, f.blur_factor)
        if n_rings > n + 1:
            blurred = fn.gaussian_blur(images_float, window_size=maths.kernel_size(sigma, DALI), sigma=sigma,
                                       dtype=types.FLOAT)
            out = out + maths.ring_mask(z, n, DALI) * blurred
    return dmath.clamp(out, 0.0, 1.0)


def magnification_maps(row, col, rho, size: int, mode: str, fovea: float, softness: float, exp_c: float) -> tuple:
    """(mapx, mapy) for ``fn.experimental.remap(pixel_origin="center")``: SPEC §5's sampling positions,
    the shared per-pixel offsets (computed once) scaled by the shared per-sample coefficient."""
    offsets = maths.magnification_offsets(size, size, mode, fovea, softness, exp_c, torch.float64).float().numpy()
    coef = maths.magnification_coef(row, col, rho, size, size, DALI)
    mapy = row + coef * types.Constant(offsets[..., 0].copy())
    mapx = col + coef * types.Constant(offsets[..., 1].copy())
    return mapx, mapy


def normalise(images, spec: AugmentSpec, flip, float_input: bool):
    """Flip + (x − mean)/std + HWC→CHW, float32."""
    scale = 1.0 if float_input else 255.0
    return fn.crop_mirror_normalize(images, mirror=fn.cast(flip, dtype=types.INT32), dtype=types.FLOAT,
                                    output_layout="CHW", mean=[m * scale for m in spec.mean],
                                    std=[s * scale for s in spec.std])


def view(source, p: dict, spec: AugmentSpec, size: int, gpu: bool) -> tuple:
    """One augmented view of ``source`` under ``spec`` with parameters ``p``: (CHW float view, fixations
    (row, col) in view coordinates as a 2-vector per sample, or None when the recipe has none)."""
    images = crop(source, p["box"], size, gpu, spec.crop.interpolation)
    images = colour(images, p, spec)
    images = blur(images, p, spec, size)
    if not spec.needs_fixation:
        images = solarize(images, p, spec, float_input=False)
        return normalise(images, spec, p["flip"], float_input=False), None
    border = params.fixation_border(spec, size)
    row = maths.uniform_coordinate(p["fix_u"][0], size, border, DALI)
    col = maths.uniform_coordinate(p["fix_u"][1], size, border, DALI)
    col_source = col + _float(p["flip"]) * ((size - 1.0) - 2.0 * col)  # the flip comes last, in normalise
    images = _float(images) * (1.0 / 255.0)
    if spec.foveation.enabled:
        images = foveate(images, row, col_source, p["fovea_area"], size, spec.foveation, gpu)
    images = solarize(images, p, spec, float_input=True)
    if spec.magnification.enabled:
        m = spec.magnification
        mapx, mapy = magnification_maps(row, col_source, p["cover_ratio"], size, m.mode,
                                        *params.magnification_radii(spec, size), m.exp_c)
        images = fn.experimental.remap(images, mapx.gpu(), mapy.gpu(), pixel_origin="center",
                                       interp=types.INTERP_LINEAR)
    return normalise(images, spec, p["flip"], float_input=True), fn.stack(row, col)
