"""Backbones: torchvision trunks with the classifier removed and the feature size discovered.

``build_backbone`` is also what ``headcam-eval`` uses to rebuild a trunk from a checkpoint, so
the set of names here is the set of architectures a checkpoint may name.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from headcam.console import UsageError

ARCHS = ("resnet18", "resnet50", "resnext50_32x4d", "mobilenet_v2")


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


def build_backbone(arch: str, small_stem: bool = False) -> tuple[nn.Module, int]:
    """A randomly initialised trunk that maps B x 3 x H x W to B x D pooled features, and D."""
    if arch not in ARCHS:
        raise UsageError(f"unknown backbone '{arch}'; supported: {', '.join(ARCHS)}")
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
