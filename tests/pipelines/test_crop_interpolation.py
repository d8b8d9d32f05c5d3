"""``crop.interpolation``: the recipes resize their crops the way their reference scripts do.

The reference scripts run torchvision's ``RandomResizedCrop`` on PIL images, so the crop is PIL's
``resize(box=..., resample=...)``; ours resizes uint8 tensors with torchvision's antialiased kernels,
which follow PIL's. The test holds ours to PIL on real frames, for both filters, inside a 2-pixel frame: PIL's
filter reads the source beyond the box, torchvision's crop-then-resize clamps at the box's edge.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from media_frames import real_frames
from PIL import Image

from headcam.console import UsageError
from headcam.pipelines.spec import recipe_spec, resolve_spec
from headcam.pipelines.torch.geometry import crop_views

SIDE = 48


@pytest.mark.parametrize("recipe, interpolation", [
    ("dino", "bicubic"),  # fd/main_dino.py DataAugmentationDINO: RandomResizedCrop(..., interpolation=BICUBIC)
    ("mae", "bicubic"),  # fm/main_pretrain.py: RandomResizedCrop(args.input_size, scale=(0.2, 1.0), interpolation=3)
    ("byol", "bicubic"),  # vicreg augmentations.py TrainTransform: InterpolationMode.BICUBIC
    ("simclr", "bilinear"), ("mocov2", "bilinear"), ("babyvision_tc", "bilinear"), ("eval", "bilinear"),
    ("mae_st", "bilinear"),  # facebookresearch/mae_st util/decoder/transform.py random_resized_crop: bilinear
])
def test_each_recipe_crops_with_its_references_filter(recipe, interpolation):
    assert recipe_spec(recipe).crop.interpolation == interpolation


def test_an_unknown_filter_is_a_one_line_usage_error():
    with pytest.raises(UsageError, match="unknown crop.interpolation 'nearest'; valid: bilinear, bicubic"):
        resolve_spec("simclr", ["crop.interpolation=nearest"])


@pytest.mark.parametrize("interpolation, pil", [("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)])
def test_crops_follow_pil_the_way_the_reference_transforms_resize(interpolation, pil):
    frames = [f for _, f in real_frames(n_per_video=2, size=96)]
    box = torch.tensor([[4, 10, 60, 50], [0, 0, 96, 80], [20, 30, 30, 40]] * 2)[: len(frames)]
    flip = torch.zeros(len(frames), dtype=torch.bool)
    ours = crop_views([torch.from_numpy(f.copy()).permute(2, 0, 1) for f in frames], box, flip, SIDE, interpolation)
    for img, b, view in zip(frames, box.tolist(), ours, strict=True):
        top, left, h, w = b
        ref = np.asarray(Image.fromarray(img).resize((SIDE, SIDE), pil, box=(left, top, left + w, top + h)))
        diff = np.abs(view.permute(1, 2, 0).numpy().astype(np.int16) - ref.astype(np.int16))[2:-2, 2:-2]
        assert diff.mean() < 0.5 and diff.max() <= 2, (diff.mean(), diff.max())
