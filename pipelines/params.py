"""Drawing a view's random parameters from a seeded NumPy generator, backend-neutral.

Why separate from the kernels: the parameters of a batch (crop boxes, flips, jitter factors and
order, blur sigmas, fovea areas, cover ratios, fixation uniforms) are drawn here on the CPU from
one ``numpy.random.Generator`` seeded per (seed, epoch, slot, batch), so a batch is the same on
CPU and CUDA, after a resume, and can be recorded (``batch.meta.views``, with ``record_views``)
for tests that compare distributions across backends. The spec-level rules below (the views of a
batch and the spec each is made under, jitter ranges, blur probability, fixation border,
magnification radii) are read by the DALI graph too, so both backends make the same views and
draw from the same distributions.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from headcam.pipelines import maths
from headcam.pipelines.spec import REFERENCE_SIDE, AugmentSpec


@dataclass
class ViewParams:
    """Parameters of one view for a batch of B images (arrays have B rows)."""

    box: np.ndarray  # B×4 float: top, left, height, width in source pixels
    flip: np.ndarray  # B bool
    jitter_on: np.ndarray  # B bool
    jitter: np.ndarray  # B×4: brightness, contrast, saturation factors, hue shift
    jitter_order: np.ndarray  # B×4 permutation of 0..3 (jitter.order=fixed: maths.TWIST_ORDER on every row)
    gray: np.ndarray  # B bool
    blur_on: np.ndarray  # B bool
    blur_sigma: np.ndarray  # B
    fovea_area: np.ndarray  # B
    cover_ratio: np.ndarray  # B
    fix_u: np.ndarray  # B×2 uniforms for the fixation draw
    solarize_on: np.ndarray  # B bool


@dataclass(frozen=True)
class ViewPlan:
    """One view of a batch: the spec it is made under (every probability its own) and its side."""

    spec: AugmentSpec
    size: int
    local: bool = False


def local_side(spec: AugmentSpec, size: int) -> int:
    """The local crops' side: ``local.size``, or :data:`maths.LOCAL_SIDE_RATIO` of the global side."""
    return spec.local.size or max(1, round(size * maths.LOCAL_SIDE_RATIO))


def _pick(p: float, p_views: tuple[float, ...], i: int) -> float:
    return p_views[i] if i < len(p_views) else p


def view_plans(spec: AugmentSpec, size: int, n_global: int) -> list[ViewPlan]:
    """The views both backends make, in ``Batch.views`` order: ``n_global`` global views at ``size`` (view i
    blurs and solarises with ``p_views[i]`` where given), then ``local.n`` local crops at :func:`local_side`
    (their own crop scale and blur p; no solarisation, foveation, magnification or fixation: DINO's)."""
    plans = [ViewPlan(dataclasses.replace(
        spec, blur=dataclasses.replace(spec.blur, p=_pick(spec.blur.p, spec.blur.p_views, i), p_views=()),
        solarize=dataclasses.replace(spec.solarize, p=_pick(spec.solarize.p, spec.solarize.p_views, i), p_views=())),
        size) for i in range(n_global)]
    local = dataclasses.replace(
        spec, crop=dataclasses.replace(spec.crop, scale=spec.local.scale),
        blur=dataclasses.replace(spec.blur, p=spec.local.blur_p, p_views=()),
        solarize=dataclasses.replace(spec.solarize, p=0.0, p_views=()),
        foveation=dataclasses.replace(spec.foveation, enabled=False),
        magnification=dataclasses.replace(spec.magnification, enabled=False))
    return plans + [ViewPlan(local, local_side(spec, size), local=True)] * spec.local.n


def crop_box(rng: np.random.Generator, h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float]
             ) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: 10 tries of (area, log-ratio), else a centre crop."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_r))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def centre_box(h: int, w: int, fraction: float) -> tuple[int, int, int, int]:
    """The centred square of side ``fraction`` × the short side (:func:`maths.centre_box`, in ints)."""
    top, left, side, _ = (int(v) for v in maths.centre_box(h, w, fraction))
    return top, left, side, side


def centre_fraction(spec: AugmentSpec) -> float:
    """Side of the centre box as a fraction of the short side: the whole of it for magnification's input."""
    return 1.0 if spec.magnification.enabled else spec.resize_ratio


def jitter_ranges(spec: AugmentSpec) -> list[tuple[float, float]]:
    """Brightness, contrast, saturation factor ranges and the hue shift range, in ``ViewParams.jitter`` order."""
    j = spec.jitter
    return [maths.jitter_range(j.brightness), maths.jitter_range(j.contrast), maths.jitter_range(j.saturation),
            maths.hue_range(j.hue)]


def blur_probability(spec: AugmentSpec) -> float:
    """Foveation replaces the Gaussian blur (the paper's foveation runs): no separate blur then."""
    return 0.0 if spec.foveation.enabled else spec.blur.p


def fixation_border(spec: AugmentSpec, side: int) -> int:
    """Border of the uniform fixation draw for a view of ``side`` px: the widest of the ops that fixate."""
    border = max(spec.foveation.border if spec.foveation.enabled else 0,
                 spec.magnification.border if spec.magnification.enabled else 0)
    return maths.uniform_border(border, side)


def magnification_radii(spec: AugmentSpec, side: int) -> tuple[float, float]:
    """(fovea F, softness K) in px for a view of ``side`` px: scaled from the paper's 96 px unless absolute."""
    m = spec.magnification
    scale = side / REFERENCE_SIDE if m.scale_with_side else 1.0
    return m.fovea * scale, m.softness * scale


def draw_view_params(rng: np.random.Generator, spec: AugmentSpec, shapes: list[tuple[int, int]]) -> ViewParams:
    """All random choices of one view for images of ``shapes`` (H, W), under a view's spec
    (:attr:`ViewPlan.spec`: its ``p_views`` already picked)."""
    b = len(shapes)
    if spec.random_crop and not spec.magnification.enabled:
        boxes = [crop_box(rng, h, w, spec.crop.scale, spec.crop.ratio) for h, w in shapes]
    else:
        boxes = [centre_box(h, w, centre_fraction(spec)) for h, w in shapes]
    jitter = np.stack([rng.uniform(lo, hi, b) for lo, hi in jitter_ranges(spec)], axis=1)
    flip, jitter_on = rng.random(b) < spec.flip_p, rng.random(b) < spec.jitter.p
    orders = np.stack([rng.permutation(4) for _ in range(b)]) if b else np.zeros((0, 4), int)
    if spec.jitter.order == "fixed":  # drawn all the same: both orders take the same numbers from the generator
        orders[:] = maths.TWIST_ORDER
    return ViewParams(
        box=np.asarray(boxes, dtype=np.float64).reshape(b, 4),
        flip=flip,
        jitter_on=jitter_on,
        jitter=jitter,
        jitter_order=orders,
        gray=rng.random(b) < spec.grayscale_p,
        blur_on=rng.random(b) < blur_probability(spec),
        blur_sigma=rng.uniform(*spec.blur.sigma, b),
        fovea_area=rng.uniform(*spec.foveation.area, b),
        cover_ratio=rng.uniform(*spec.magnification.cover_ratio, b),
        fix_u=rng.random((b, 2)),
        solarize_on=rng.random(b) < spec.solarize.p,
    )
