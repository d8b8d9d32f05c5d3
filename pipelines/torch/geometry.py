"""Per-image geometry: crop boxes resized to the view side, flips, and the saliency map that follows them.

Source images differ in size, so cropping is per image (torchvision's uint8 ``resized_crop``,
antialiased); everything after it is batched. The saliency map (any size: it is stored at 64 px
on the long side) is resampled through the same box and flip, so a fixation drawn from it lands
where the view shows the salient thing (the original sampled the uncropped map).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF


def crop_views(images: list[torch.Tensor], box: torch.Tensor, flip: torch.Tensor, side: int,
               interpolation: str = "bilinear") -> torch.Tensor:
    """uint8 3×H×W images -> B×3×side×side uint8: each image's ``box`` (top, left, h, w) resized
    (``interpolation``: ``bilinear`` or ``bicubic``, antialiased), then flipped."""
    mode = TF.InterpolationMode(interpolation)
    out = torch.empty((len(images), 3, side, side), dtype=torch.uint8)
    for i, img in enumerate(images):
        top, left, h, w = (int(v) for v in box[i].tolist())
        out[i] = TF.resized_crop(img, top, left, h, w, [side, side], interpolation=mode, antialias=True)
    out[flip] = out[flip].flip(-1)
    return out


def crop_saliency(maps: list[torch.Tensor | None], shapes: list[tuple[int, int]], box: torch.Tensor,
                  flip: torch.Tensor, side: int) -> torch.Tensor:
    """Saliency maps (h×w float, any size, or None -> zeros) through the image boxes: B×side×side.

    Output pixel j of a box (left, width) of an image of width W reads normalised position
    2·(left + (j + 0.5)·width/side)/W − 1 (``align_corners=False``), which is the same point
    of the map whatever its resolution.
    """
    out = torch.zeros((len(maps), side, side))
    j = torch.arange(side, dtype=torch.float64) + 0.5
    for i, m in enumerate(maps):
        if m is None:
            continue
        top, left, h, w = box[i].double().tolist()
        ih, iw = shapes[i]
        ys = 2 * (top + j * h / side) / ih - 1
        xs = 2 * (left + j * w / side) / iw - 1
        if flip[i]:
            xs = xs.flip(0)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).float().unsqueeze(0)
        out[i] = F.grid_sample(m[None, None].float(), grid, mode="bilinear", padding_mode="border",
                               align_corners=False)[0, 0]
    return out
