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
ARCHS = CNN_ARCHS + tuple(VITS)


def check_input_size(arch: str, size: int, whole_patches: bool = False) -> None:
    """A ViT cuts a view into patches and drops the remainder of a side that is not whole patches, as DINO's
    stride-p convolution does (a 96 px view of a ViT-B/14: 6 x 6 patches, 12 px dropped); a side smaller than
    one patch is a user error, and so is a remainder where ``whole_patches`` (MAE: its reference asserts it)."""
    if arch not in VITS:
        return
    patch = VITS[arch].patch
    if size < patch:
        raise UsageError(f"{arch} cuts views into {patch} px patches; a {size} px view is smaller than one")
    if whole_patches and size % patch:
        raise UsageError(f"{arch} takes views whose side is a multiple of {patch} px here (MAE patchifies "
                         f"whole patches), got {size}")
