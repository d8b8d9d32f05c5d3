"""Fixations: the stable softmax of SPEC §2, following saliency through the view's crop and flip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import reference
import torch

from headcam.pipelines import maths
from headcam.pipelines.spec import recipe_spec
from headcam.pipelines.torch.views import MissingSaliencyError, ViewMaker


def _blob(h: int, w: int, row: float, col: float, width: float = 3.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.exp(-((yy - row) ** 2 + (xx - col) ** 2) / (2 * width**2))


def test_sampling_matches_reference_distribution():
    m = _blob(24, 32, 8, 20, width=4.0) + 0.05
    u = (torch.arange(40000, dtype=torch.float64) + 0.5) / 40000  # a uniform grid: a deterministic histogram
    logits = maths.fixation_logits(m.expand(len(u), -1, -1), 1.5, 3, 1e-6)
    fix = maths.sample_fixations(logits, u)
    hist = np.zeros((24, 32))
    np.add.at(hist, (fix[:, 0].numpy(), fix[:, 1].numpy()), 1.0 / len(u))
    want = reference.fixation_probabilities(m.numpy(), 1.5, 3, 1e-6)
    assert np.abs(hist - want).sum() < 0.01
    assert hist[:3].sum() == 0 and hist[:, -3:].sum() == 0  # nothing drawn on the border


def test_small_temperature_is_stable_and_takes_the_argmax():
    m = _blob(24, 32, 8, 20) * 1e-3  # small values: log(m + eps)/T is huge in magnitude at T = 0.01
    logits = maths.fixation_logits(m[None].expand(5, -1, -1), 0.01, 2, 1e-6)
    fix = maths.sample_fixations(logits, torch.linspace(0.01, 0.99, 5, dtype=torch.float64))
    assert torch.isfinite(logits[:, 5, 5]).all()
    assert (fix == torch.tensor([8, 20])).all()
    assert (maths.argmax_fixations(logits) == torch.tensor([8, 20])).all()


def _saliency_spec(**fixation):
    spec = recipe_spec("simclr")
    return dataclasses.replace(spec, random_crop=False, resize_ratio=1.0,
                               magnification=dataclasses.replace(spec.magnification, enabled=True),
                               fixation=dataclasses.replace(spec.fixation, mode="saliency", **fixation))


def _fixations(spec, images, maps, seed=0):
    maker = ViewMaker(spec, size=48, n_views=1)
    (view,) = maker.prepare(images, maps, np.random.default_rng(seed))
    return maker.finish(view)[1]


def test_mean_fixation_lands_on_the_hotspot_through_the_crop():
    """A 96×128 image centre-cropped to its 96×96 middle: the map's hotspot at (30, 90) in the image
    is at (30, 74) in the crop, i.e. (15, 37) in the 48 px view."""
    n = 200
    images = [torch.zeros(3, 96, 128, dtype=torch.uint8)] * n
    hotspot = _blob(24, 32, 30 / 4, 90 / 4, width=1.0).float()  # the map is stored at a quarter size
    spec = dataclasses.replace(_saliency_spec(temperature=0.5, bdr=4), flip_p=0.0)
    fix = _fixations(spec, images, [hotspot] * n).double()
    mean = fix.mean(0)
    assert abs(mean[0].item() - 15) < 1.5 and abs(mean[1].item() - 37) < 1.5, mean


def test_flipped_view_gives_the_mirrored_fixation():
    images = [torch.zeros(3, 64, 64, dtype=torch.uint8)] * 4
    maps = [_blob(32, 32, 10 + 3 * i, 4 + 3 * i, width=1.5).float() for i in range(4)]
    plain = dataclasses.replace(_saliency_spec(temperature=0.0, bdr=2), flip_p=0.0)
    fix = _fixations(plain, images, maps)
    fix_flipped = _fixations(dataclasses.replace(plain, flip_p=1.0), images, maps)
    assert (fix_flipped[:, 0] == fix[:, 0]).all()
    assert (fix_flipped[:, 1] == 47 - fix[:, 1]).all()
    assert (fix[:, 1] < 24).all()  # the blobs are on the left: the test means something


def test_missing_saliency_falls_back_to_uniform_or_fails_when_strict():
    images = [torch.zeros(3, 64, 64, dtype=torch.uint8)] * 3
    maps = [_blob(32, 32, 5, 5).float(), None, None]
    fix = _fixations(_saliency_spec(temperature=0.0, bdr=2), images, maps)
    assert fix.shape == (3, 2)
    with pytest.raises(MissingSaliencyError):
        _fixations(_saliency_spec(strict=True), images, maps)


def test_yaml_recipes_resolve_and_spell_out_the_presets():
    from headcam.pipelines.spec import RECIPE_DIR, recipe_names

    assert recipe_spec(str(RECIPE_DIR / "simclr.yaml")) == recipe_spec("simclr")  # the YAML spells out the preset
    fov = recipe_spec("simclr_foveation")
    assert fov.foveation.enabled and fov.fixation.mode == "saliency" and fov.recipe == "simclr_foveation"
    mag = recipe_spec("simclr_magnification")
    assert mag.magnification.enabled and mag.blur.p == 1.0
    assert {"simclr", "eval", "simclr_foveation", "simclr_magnification"} <= set(recipe_names())
