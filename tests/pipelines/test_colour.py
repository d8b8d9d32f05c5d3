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
