"""Drawing a view's random parameters from a seeded NumPy generator, backend-neutral.

Why separate from the kernels: the parameters of a batch (crop boxes, flips, jitter factors and
order, blur sigmas, fovea areas, cover ratios, fixation uniforms) are drawn here on the CPU from
one ``numpy.random.Generator`` seeded per (seed, epoch, slot, batch), so a batch is the same on
CPU and CUDA, after a resume, and can be recorded (``Batch.meta["params"]``) for tests that
compare distributions across backends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from headcam.pipelines.spec import AugmentSpec


@dataclass
class ViewParams:
    """Parameters of one view for a batch of B images (arrays have B rows)."""

    box: np.ndarray  # B×4 float: top, left, height, width in source pixels
    flip: np.ndarray  # B bool
    jitter_on: np.ndarray  # B bool
    jitter: np.ndarray  # B×4: brightness, contrast, saturation factors, hue shift
    jitter_order: np.ndarray  # B×4 permutation of 0..3
    gray: np.ndarray  # B bool
    blur_on: np.ndarray  # B bool
    blur_sigma: np.ndarray  # B
    fovea_area: np.ndarray  # B
    cover_ratio: np.ndarray  # B
    fix_u: np.ndarray  # B×2 uniforms for the fixation draw

    @property
    def crop_area(self) -> np.ndarray:
        """Crop box area (before clipping to the source), for distribution checks."""
        return self.box[:, 2] * self.box[:, 3]


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
    """The centred square of side ``fraction`` × the short side (resize-then-centre-crop geometry)."""
    side = max(1, int(round(min(h, w) * fraction)))
    return (h - side) // 2, (w - side) // 2, side, side


def draw_view_params(rng: np.random.Generator, spec: AugmentSpec, shapes: list[tuple[int, int]]) -> ViewParams:
    """All random choices of one view for images of ``shapes`` (H, W)."""
    b = len(shapes)
    if spec.random_crop and not spec.magnification.enabled:
        boxes = [crop_box(rng, h, w, spec.crop.scale, spec.crop.ratio) for h, w in shapes]
    else:
        frac = spec.resize_ratio if not spec.magnification.enabled else 1.0
        boxes = [centre_box(h, w, frac) for h, w in shapes]
    j = spec.jitter
    jitter = np.stack([rng.uniform(max(0.0, 1 - j.brightness), 1 + j.brightness, b),
                       rng.uniform(max(0.0, 1 - j.contrast), 1 + j.contrast, b),
                       rng.uniform(max(0.0, 1 - j.saturation), 1 + j.saturation, b),
                       rng.uniform(-j.hue, j.hue, b)], axis=1)
    return ViewParams(
        box=np.asarray(boxes, dtype=np.float64).reshape(b, 4),
        flip=rng.random(b) < spec.flip_p,
        jitter_on=rng.random(b) < j.p,
        jitter=jitter,
        jitter_order=np.stack([rng.permutation(4) for _ in range(b)]) if b else np.zeros((0, 4), int),
        gray=rng.random(b) < spec.grayscale_p,
        blur_on=(rng.random(b) < spec.blur.p) & (not spec.foveation.enabled),
        blur_sigma=rng.uniform(*spec.blur.sigma, b),
        fovea_area=rng.uniform(*spec.foveation.area, b),
        cover_ratio=rng.uniform(*spec.magnification.cover_ratio, b),
        fix_u=rng.random((b, 2)),
    )
