"""The architecture names a run or a checkpoint may give, and their shapes, without importing torch.

:mod:`headcam.train.backbones` builds them; this module is what config validation and ``--help``
read, so a wrong ``arch`` or a ViT side smaller than one patch fails in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from headcam.console import UsageError

CNN_ARCHS = ("resnet18", "resnet50", "resnext50_32x4d", "mobilenet_v2")


@dataclass(frozen=True)
class VitShape:
    patch: int
    width: int
    depth: int
    heads: int


VITS = {
    "vit_small_patch16": VitShape(16, 384, 12, 6),
    "vit_base_patch16": VitShape(16, 768, 12, 12),
    "vit_base_patch14": VitShape(14, 768, 12, 12),
    "vit_large_patch16": VitShape(16, 1024, 24, 16),
    "vit_mini_patch4": VitShape(4, 128, 6, 4),  # CPU-sized (1.2 M parameters): bench/learn.py and tests at 32 px
}
#: Spatiotemporal ViTs (:mod:`headcam.train.video_vit`): the widths, depths and heads of facebookresearch/mae_st's
#: ``models_vit.py`` (``vit_huge_patch14``: 1280 x 32, 16 heads, patch 14 as eminorhan/mae_st builds it; tiny and
#: small as timm's), each at patch 14 and 16, with tubelets of ``t_patch_size`` 2 frames.
_ST_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16),
             "huge": (1280, 32, 16)}
VIDEO_VITS = {f"vit_{size}_patch{patch}_st": VitShape(patch, *shape)
              for size, shape in _ST_SIZES.items() for patch in (14, 16)}
#: A video ViT's clip length and tubelet depth unless its weights say otherwise: the reference's ``--num_frames 16``
#: and ``--t_patch_size 2`` (eminorhan/mae_st ``models_vit.py``, ``pretrain.py`` / ``finetune.py`` arguments).
CLIP_FRAMES, TUBELET_FRAMES = 16, 2
ARCHS = CNN_ARCHS + tuple(VITS) + tuple(VIDEO_VITS)


def patch_of(arch: str) -> int | None:
    """The side of a ViT's (or a video ViT's) patches in px, None for a CNN."""
    shape = VITS.get(arch) or VIDEO_VITS.get(arch)
    return shape.patch if shape else None


def check_input_size(arch: str, size: int, whole_patches: bool = False) -> None:
    """A ViT cuts a view into patches and drops the remainder of a side that is not whole patches, as DINO's
    stride-p convolution does (a 96 px view of a ViT-B/14: 6 x 6 patches, 12 px dropped); a side smaller than
    one patch is a user error, and so is a remainder where ``whole_patches`` (MAE: its reference asserts it)."""
    patch = patch_of(arch)
    if patch is None:
        return
    if size < patch:
        raise UsageError(f"{arch} cuts views into {patch} px patches; a {size} px view is smaller than one")
    if whole_patches and size % patch:
        raise UsageError(f"{arch} takes views whose side is a multiple of {patch} px here (MAE patchifies "
                         f"whole patches), got {size}")
