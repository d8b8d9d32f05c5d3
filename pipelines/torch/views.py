"""The views callable of the torch backend: decoded images in, augmented batches out.

Input of this transform: a list of B uint8 3×H×W tensors (sizes may differ), their saliency
maps (float h×w tensors or None) and a seeded ``numpy.random.Generator``.
Output of this transform: ``n_views`` global float32 B×3×S×S tensors then ``local.n`` local crops
B×3×s×s (:func:`~headcam.pipelines.params.view_plans`), normalised, plus the drawn parameters (for
the record and for tests).

Two stages so a GPU run can split them: :meth:`ViewMaker.prepare` (CPU, in loader workers: draw
parameters, crop, flip, follow the saliency map) and :meth:`ViewMaker.finish` (any device,
batched: jitter, grayscale, blur or foveation, solarisation, magnification, normalise). The order
is the paper's: magnification replaces the random resized crop and comes after jitter, grayscale
and blur; foveation replaces the Gaussian blur.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from headcam.pipelines import maths
from headcam.pipelines.params import (
    ViewParams,
    ViewPlan,
    draw_view_params,
    fixation_border,
    magnification_radii,
    view_plans,
)
from headcam.pipelines.spec import AugmentSpec
from headcam.pipelines.torch import colour
from headcam.pipelines.torch.blur import gaussian_blur
from headcam.pipelines.torch.foveation import foveate
from headcam.pipelines.torch.geometry import crop_saliency, crop_views
from headcam.pipelines.torch.magnification import magnify


class MissingSaliencyError(Exception):
    """Saliency fixations were asked for with ``fixation.strict`` and a sample has no ``.sal.png``."""


@dataclass
class PreparedView:
    """One view after the per-image (CPU) stage."""

    pixels: torch.Tensor  # B×3×S×S uint8
    saliency: torch.Tensor | None  # B×S×S float, or None when no fixation needs it
    has_saliency: torch.Tensor  # B bool
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    index: int = 0  # which of the maker's view plans made it


def _tensors(p: ViewParams) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.ascontiguousarray(v)) for k, v in vars(p).items()}


def _uses_saliency(spec: AugmentSpec) -> bool:
    return spec.needs_fixation and spec.fixation.mode == "saliency"


class ViewMaker:
    """Makes the views of a batch under one :class:`AugmentSpec`: ``n_views`` global views at ``size`` and the
    spec's local crops, each independently augmented under its own :class:`ViewPlan`."""

    def __init__(self, spec: AugmentSpec, size: int = 224, n_views: int = 1):
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.spec, self.size, self.n_views = spec, size, n_views
        self.plans = view_plans(spec, size, n_views)

    @property
    def uses_saliency(self) -> bool:
        return _uses_saliency(self.spec)

    def prepare(self, images: list[torch.Tensor], saliency: list[torch.Tensor | None], rng: np.random.Generator,
                clip_len: int = 1) -> list[PreparedView]:
        """Draw each view's parameters, crop and flip. ``clip_len`` > 1: the images are clips of that many
        frames, one after the other; each clip's view parameters are drawn once (from its first frame's
        shape) and applied to all its frames, so its crop, flip and colour agree across time."""
        shapes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        has_sal = torch.tensor([m is not None for m in saliency], dtype=torch.bool)
        if self.uses_saliency and self.spec.fixation.strict and not bool(has_sal.all()):
            raise MissingSaliencyError("a sample has no saliency map and fixation.strict is set")
        views = []
        for index, plan in enumerate(self.plans):
            drawn = _tensors(draw_view_params(rng, plan.spec, shapes[::clip_len]))
            p = {k: v.repeat_interleave(clip_len, dim=0) for k, v in drawn.items()}
            pixels = crop_views(images, p["box"], p["flip"], plan.size, plan.spec.crop.interpolation)
            sal = (crop_saliency(saliency, shapes, p["box"], p["flip"], plan.size) if _uses_saliency(plan.spec)
                   else None)
            views.append(PreparedView(pixels, sal, has_sal, p, index))
        return views

    def finish(self, view: PreparedView, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Batched photometric ops on ``device``; returns (normalised view, fixations B×2 or empty)."""
        plan = self.plans[view.index]
        s, size, p = plan.spec, plan.size, {k: v.to(device) for k, v in view.params.items()}
        x = view.pixels.to(device).float().div_(255)
        if s.jitter.order == "fixed":
            x = colour.colour_twist(x, p["jitter_on"], p["jitter"])
        else:
            x = colour.colour_jitter(x, p["jitter_on"], p["jitter"], p["jitter_order"])
        gray = torch.nonzero(p["gray"]).flatten()
        if gray.numel():
            x[gray] = colour.grayscale(x[gray])
        blur = torch.nonzero(p["blur_on"]).flatten()
        if blur.numel():
            sigma = p["blur_sigma"][blur]
            x[blur] = gaussian_blur(x[blur], sigma, maths.blur_kernel_sizes(sigma, size, s.blur.kernel_frac))
        fix = torch.zeros((x.shape[0], 0), dtype=torch.long, device=x.device)
        if s.needs_fixation:
            fix = self.fixations(view, plan, p["fix_u"])
            if s.foveation.enabled:
                x = foveate(x, fix, p["fovea_area"], s.foveation)
        solar = torch.nonzero(p["solarize_on"]).flatten()
        if solar.numel():
            x[solar] = maths.solarize(x[solar], s.solarize.threshold)
        if s.magnification.enabled:
            m = s.magnification
            x = magnify(x, fix, p["cover_ratio"], m.mode, *magnification_radii(s, size), m.exp_c)
        mean = torch.tensor(s.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(s.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std, fix

    def fixations(self, view: PreparedView, plan: ViewPlan, fix_u: torch.Tensor) -> torch.Tensor:
        """Uniform inside the border, or drawn from the view's own saliency map (missing map -> uniform)."""
        n, dev, size = fix_u.shape[0], fix_u.device, plan.size
        fix = maths.uniform_fixations(fix_u, size, size, fixation_border(plan.spec, size))
        if not _uses_saliency(plan.spec):
            return fix
        f = plan.spec.fixation
        has = view.has_saliency.to(dev)
        if n and bool(has.any()):
            sal = view.saliency.to(dev)[has]
            logits = maths.fixation_logits(sal, f.temperature, maths.scaled(f.bdr, size), f.eps)
            drawn = (maths.argmax_fixations(logits) if f.temperature <= 0
                     else maths.sample_fixations(logits, fix_u[has, 0]))
            fix[has] = drawn
        return fix

    def __call__(self, images: list[torch.Tensor], saliency: list[torch.Tensor | None], rng: np.random.Generator,
                 device: torch.device | str = "cpu") -> list[torch.Tensor]:
        return [self.finish(v, device)[0] for v in self.prepare(images, saliency, rng)]
