"""The architecture names a run or a checkpoint may give, and their shapes, without importing torch.

:mod:`headcam.train.backbones` builds them; this module is what config validation and ``--help``
read, so a wrong ``arch`` or a ViT side that is not whole patches fails in a fraction of a second.
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
}
ARCHS = CNN_ARCHS + tuple(VITS)


def check_input_size(arch: str, size: int) -> None:
    """ViTs cut the view into whole patches: a side that is not a multiple of the patch is a user error."""
    if arch in VITS and size % VITS[arch].patch:
        raise UsageError(f"{arch} takes views whose side is a multiple of {VITS[arch].patch} px, got {size}")
