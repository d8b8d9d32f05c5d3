"""Foveation and magnification of the torch backend against the float64 NumPy reference.

Tolerances: float64 torch matches to 1e-9 (same formulas, different code); float32 to 1e-4
(foveation) and 2e-3 (magnification: grid positions in float32 move bilinear weights by ~1e-4 px
on a 0..1 image with sharp edges).
"""

from __future__ import annotations

import numpy as np
import pytest
import reference
import torch
from media_frames import real_frames

from headcam.pipelines import maths
from headcam.pipelines.torch.blur import gaussian_blur
from headcam.pipelines.torch.foveation import foveate
from headcam.pipelines.torch.magnification import magnify


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Two real frames, cropped to 40×56 (non-square on purpose: rows and columns must not swap)."""
    imgs = [f for _, f in real_frames(n_per_video=1, size=64)][:2]
    return np.stack([f[:40, :56] for f in imgs]).astype(np.float64) / 255


def _torch(batch: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(batch).permute(0, 3, 1, 2).to(dtype)


def test_plateau_masks_sum_to_one():
    h, w = 30, 50
    fovea, rings, _ = reference.foveation_masks(h, w, (7, 41), 0.05)
    np.testing.assert_allclose(fovea + sum(rings), 1.0, atol=1e-12)
    assert rings[-1].max() == 0.0  # the last ring is empty inside the image (SPEC §4: skip its blur)
    x = torch.linspace(-2, 2, 401, dtype=torch.float64)
    np.testing.assert_allclose(maths.plateau(x).numpy(), reference.plateau(x.numpy()), atol=1e-15)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_foveation_matches_reference(frames, dtype, atol):
    fix = [(5, 50), (20, 10)]
    area = [0.02, 0.3]
    want = np.stack([reference.foveate(frames[i], fix[i], area[i]) for i in range(2)])
    got = foveate(_torch(frames, dtype), torch.tensor(fix), torch.tensor(area, dtype=torch.float64))
    assert got.dtype == dtype
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).double().numpy(), want, atol=atol)
    assert np.abs(want - frames).max() > 0.05  # the reference really blurs: the comparison is not trivial


@pytest.mark.parametrize("mode", ["radial_quad", "radial_exp"])
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-9), (torch.float32, 2e-3)])
def test_magnification_matches_reference(frames, mode, dtype, atol):
    fix = [(12, 30), (35, 3)]
    rho = [0.05, 0.35]
    want = np.stack([reference.magnify(frames[i], fix[i], rho[i], mode, 8.0, 8.0) for i in range(2)])
    got = magnify(_torch(frames, dtype), torch.tensor(fix), torch.tensor(rho, dtype=torch.float64), mode, 8.0, 8.0)
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).double().numpy(), want, atol=atol)


def test_radial_quad_is_continuous_with_slope_one_at_the_fovea():
    f, k = 20.0, 20.0
    r = torch.tensor([f - 1e-6, f, f + 1e-6], dtype=torch.float64)
    g = maths.magnified_radius(r, "radial_quad", f, k, 96, 96)
    assert abs(g[1].item() - f) < 1e-12
    assert abs((g[2] - g[0]).item() / 2e-6 - 1.0) < 1e-4


def test_grid_convention_pixel_centres_are_exact():
    """align_corners=False: integer (row, col) positions read exactly that pixel."""
    img = torch.arange(5 * 7, dtype=torch.float64).view(1, 1, 5, 7)
    pos = torch.tensor([[[[0.0, 0.0], [4.0, 6.0], [2.0, 3.0]]]], dtype=torch.float64)
    grid = maths.to_grid_sample(pos, 5, 7)
    out = torch.nn.functional.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert out.flatten().tolist() == [0.0, 34.0, 17.0]


def test_magnification_centre_reads_the_fixation():
    """The output centre (four pixels round it for an even side) reads the fixated neighbourhood."""
    img = torch.zeros(1, 1, 31, 31, dtype=torch.float64)
    img[0, 0, 9, 21] = 1.0
    out = magnify(img, torch.tensor([[9, 21]]), torch.tensor([0.05]), "radial_quad", 5.0, 5.0)
    assert out[0, 0, 15, 15].item() == pytest.approx(1.0)  # odd side: the centre pixel samples f exactly
    assert out[0, 0, 15, 14].item() < 1.0  # and it is magnified: neighbours read between pixels


def test_simclr_blur_kernel_cut_to_four_sigma_changes_nothing_visible(frames):
    """maths.blur_kernel_sizes drops the taps beyond 4σ of SimCLR's 10%-of-the-side kernel: under 1e-3
    (a quarter of a uint8 step) from the full kernel, for every σ of the recipe's range."""
    x = _torch(frames[:, :40, :40], torch.float64).repeat(3, 1, 1, 1)
    sigma = torch.tensor([0.1, 0.6, 1.0, 1.4, 1.8, 2.0], dtype=torch.float64)
    cut = maths.blur_kernel_sizes(sigma, 224, 0.1)
    assert cut.tolist() == [3, 7, 9, 13, 17, 17]
    full = torch.full_like(cut, maths.blur_kernel_size(224, 0.1))
    assert (gaussian_blur(x, sigma, cut) - gaussian_blur(x, sigma, full)).abs().max() < 1e-3
