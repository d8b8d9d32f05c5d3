"""The batched per-sample colour ops equal torchvision's per-image functional ops (SimCLR's ColorJitter)."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as F

from headcam.pipelines.torch import colour


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(6, 3, 17, 19)


@pytest.mark.parametrize("ours,theirs,factors", [
    (colour.brightness, F.adjust_brightness, [0.2, 0.6, 1.0, 1.3, 1.8, 0.0]),
    (colour.contrast, F.adjust_contrast, [0.2, 0.6, 1.0, 1.3, 1.8, 0.0]),
    (colour.saturation, F.adjust_saturation, [0.2, 0.6, 1.0, 1.3, 1.8, 0.0]),
    (colour.hue, F.adjust_hue, [-0.5, -0.3, -0.05, 0.0, 0.2, 0.45]),
])
def test_per_sample_ops_match_torchvision(images, ours, theirs, factors):
    got = ours(images, torch.tensor(factors))
    want = torch.stack([theirs(images[i], f) for i, f in enumerate(factors)])
    assert (got - want).abs().max() < 1e-5


def test_jitter_applies_each_images_own_order(images):
    factors = torch.tensor([[1.5, 0.5, 1.2, 0.1]] * 6)
    orders = torch.stack([torch.randperm(4, generator=torch.Generator().manual_seed(i)) for i in range(6)])
    on = torch.tensor([True, True, True, True, True, False])
    got = colour.colour_jitter(images, on, factors, orders)
    ops = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
    for i in range(6):
        want = images[i]
        for op_index in orders[i].tolist() if on[i] else []:
            want = ops[op_index](want, float(factors[i, op_index]))
        assert (got[i] - want).abs().max() < 1e-5
    assert (colour.grayscale(images) - F.rgb_to_grayscale(images, 3)).abs().max() < 1e-6


# ---------------------------------------------------------------- jitter.order=fixed: DALI's fused colour twist


def _twist(images: torch.Tensor, factors: list[list[float]]) -> torch.Tensor:
    return colour.colour_twist(images, torch.ones(len(factors), dtype=torch.bool), torch.tensor(factors))


def test_fused_twist_neutral_grey_and_flat(images):
    """Neutral factors change nothing; saturation 0 keeps only YIQ's Y (grey, to the 0.3 % by which DALI's inverse
    of its three-decimal YIQ matrix departs from 1 on the grey axis); contrast 0 makes b × mid-grey everywhere."""
    from headcam.pipelines.maths import TWIST_CENTRE

    x = images[:3]
    out = _twist(x, [[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.3], [0.7, 0.0, 1.4, 0.2]])
    assert (out[0] - x[0]).abs().max() < 1e-6
    assert (out[1] - out[1, :1]).abs().max() < 4e-3 and out[1].std() > 0.05
    assert (out[2] - 0.7 * TWIST_CENTRE).abs().max() < 1e-6


def test_fused_twist_is_its_order_without_the_clips(images):
    """One matrix = saturation and hue (in either order), then contrast, then brightness (maths.TWIST_ORDER),
    each unclipped: composing the one-factor twists gives the fused one where nothing clips."""
    from headcam.pipelines.maths import TWIST_ORDER, twist_matrix

    factors = torch.tensor([[1.3, 0.6, 1.7, 0.15]])
    neutral = torch.tensor([1.0, 1.0, 1.0, 0.0])
    fused_m, fused_t = twist_matrix(factors)
    assert sorted(TWIST_ORDER[:2]) == [2, 3]  # saturation and hue first, in either order: they commute
    for order in (TWIST_ORDER, (TWIST_ORDER[1], TWIST_ORDER[0], *TWIST_ORDER[2:])):
        m, t = torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
        for op in order:  # x -> step(m x + t)
            one = neutral.clone()
            one[op] = factors[0, op]
            step_m, step_t = twist_matrix(one.unsqueeze(0))
            m, t = step_m[0] @ m, step_m[0] @ t + step_t[0]
        assert (m - fused_m[0]).abs().max() < 1e-9 and (t - fused_t[0]).abs().max() < 1e-9
    x = images[:1] * 0.2 + 0.4  # mid-range pixels: no clip in any step
    got = colour.colour_twist(x, torch.ones(1, dtype=torch.bool), factors)
    want = torch.einsum("ij,bjhw->bihw", m.float(), x) + t.float().view(1, 3, 1, 1)
    assert (got - want.clamp(0, 1)).abs().max() < 1e-5


def test_fused_twist_leaves_samples_that_are_off(images):
    on = torch.tensor([True, False, True, False, True, False])
    factors = torch.tensor([[1.5, 0.5, 1.2, 0.1]] * 6)
    out = colour.colour_twist(images, on, factors)
    assert (out[~on] == images[~on]).all() and (out[on] - images[on]).abs().mean() > 0.05


def test_fixed_order_draws_the_same_numbers_as_random():
    """jitter.order only changes how the factors are applied: the generator gives both orders the same draws."""
    import numpy as np

    from headcam.pipelines.maths import TWIST_ORDER
    from headcam.pipelines.params import draw_view_params
    from headcam.pipelines.spec import UsageError, resolve_spec

    shapes = [(40, 50)] * 7
    rand = draw_view_params(np.random.default_rng(4), resolve_spec("simclr"), shapes)
    fixed = draw_view_params(np.random.default_rng(4), resolve_spec("simclr", ["jitter.order=fixed"]), shapes)
    for name, value in vars(rand).items():
        if name != "jitter_order":
            assert np.array_equal(value, getattr(fixed, name)), name
    assert (fixed.jitter_order == TWIST_ORDER).all() and len({tuple(o) for o in rand.jitter_order}) > 1
    with pytest.raises(UsageError, match="unknown jitter.order 'fused'; valid: random, fixed"):
        resolve_spec("simclr", ["jitter.order=fused"])
