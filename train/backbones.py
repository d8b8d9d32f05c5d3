"""Backbones: torchvision ResNets / MobileNet and timm ViTs, classifier removed, feature size known.

``build_backbone`` is also what ``headcam-eval`` uses to rebuild a trunk from a checkpoint, so
the set of names here is the set of architectures a checkpoint may name.

ViTs (SPEC §10) are timm ``VisionTransformer`` s with timm's parameter names, which are also the
names in the DINO and MAE checkpoints of the silicon-menagerie zoo: qkv bias, LayerNorm eps 1e-6,
MLP ratio 4, built for 224 px with position embeddings interpolated (bicubic) for other input
sizes on the fly, and no classifier, so the trunk returns the CLS token after the final norm.
"""

from __future__ import annotations

from functools import partial

import torch
import torchvision
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from headcam.console import UsageError
from headcam.train.archs import ARCHS, CNN_ARCHS, VITS, VitShape, check_input_size  # noqa: F401 (re-exported)


def _strip_head(model: nn.Module) -> nn.Module:
    if hasattr(model, "fc"):
        model.fc = nn.Identity()
    elif hasattr(model, "classifier"):
        model.classifier = nn.Identity()
    return model


def apply_small_stem(model: nn.Module) -> nn.Module:
    """CIFAR-style stem for small images: 3x3 stride-1 first conv, no max-pool (SimCLR on CIFAR-10)."""
    if not hasattr(model, "conv1"):
        raise UsageError("small_stem is only defined for ResNet-family backbones")
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def build_vit(arch: str, drop_path: float = 0.0, img_size: int = 224) -> VisionTransformer:
    """The ViT ``arch`` (see :data:`VITS`); ``img_size`` only sets the stored position-embedding grid."""
    v = VITS[arch]
    return VisionTransformer(img_size=img_size, patch_size=v.patch, embed_dim=v.width, depth=v.depth,
                             num_heads=v.heads, mlp_ratio=4.0, qkv_bias=True, num_classes=0, global_pool="token",
                             norm_layer=partial(nn.LayerNorm, eps=1e-6), drop_path_rate=drop_path,
                             dynamic_img_size=True)


class VitProbeFeatures(nn.Module):
    """DINO's linear-probe features of a ViT: the final-norm CLS token of each of the last ``blocks`` blocks,
    concatenated, plus (``avgpool``) the mean of the last block's patch tokens; ``blocks=1`` without
    ``avgpool`` is the plain CLS feature. Output width: ``width · (blocks + avgpool)``."""

    def __init__(self, vit: VisionTransformer, blocks: int = 4, avgpool: bool = True):
        super().__init__()
        if not 1 <= blocks <= len(vit.blocks):
            raise UsageError(f"the ViT has {len(vit.blocks)} blocks; cannot take the last {blocks}")
        self.vit, self.blocks, self.avgpool = vit, blocks, avgpool
        self.dim = vit.embed_dim * (blocks + int(avgpool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = self.vit.get_intermediate_layers(x, n=self.blocks, return_prefix_tokens=True, norm=True)
        feats = [prefix[:, 0] for _, prefix in layers]
        if self.avgpool:
            feats.append(layers[-1][0].mean(dim=1))
        return torch.cat(feats, dim=-1)


def parse_vit_features(text: str) -> tuple[int, bool]:
    """``cls`` -> (1, False); ``lastN`` -> (N, False); ``lastN+avgpool`` -> (N, True) (DINO's eval: last4+avgpool)."""
    head, _, tail = text.partition("+")
    if head == "cls":
        blocks = 1
    elif head.startswith("last") and head[4:].isdigit() and int(head[4:]) >= 1:
        blocks = int(head[4:])
    else:
        blocks = 0
    if blocks == 0 or tail not in ("", "avgpool"):
        raise UsageError(f"--vit-features '{text}': use cls, lastN or lastN+avgpool (e.g. last4+avgpool)")
    return blocks, tail == "avgpool"


def build_backbone(arch: str, small_stem: bool = False, drop_path: float = 0.0) -> tuple[nn.Module, int]:
    """A randomly initialised trunk that maps B x 3 x H x W to B x D features, and D.

    ``drop_path`` (stochastic depth) applies to ViTs, as DINO's student uses it.
    """
    if arch not in ARCHS:
        raise UsageError(f"unknown backbone '{arch}'; supported: {', '.join(ARCHS)}")
    if arch in VITS:
        if small_stem:
            raise UsageError("small_stem is only defined for ResNet-family backbones")
        return build_vit(arch, drop_path), VITS[arch].width
    model = getattr(torchvision.models, arch)(weights=None)
    if small_stem:
        model = apply_small_stem(model)
    model = _strip_head(model)
    with torch.no_grad():
        was_training = model.training
        model.eval()
        dim = model(torch.zeros(1, 3, 64, 64)).shape[1]
        model.train(was_training)
    return model, int(dim)
