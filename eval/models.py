"""What ``--model`` names: a frozen trunk to extract features from, or a hand-made baseline.

A model spec is one of

- a path to a headcam checkpoint (``{"format": "headcam-checkpoint", "arch", "small_stem", "backbone", ...}``);
- a path to a published checkpoint, loaded unchanged: baby-vision (ResNeXt-50 / MobileNetV2) or the
  silicon-menagerie DINO and MAE files (ViTs, ResNeXt-50); the layout and architecture are recognised
  from the key names and tensor shapes, no flags (:mod:`headcam.eval.published`);
- ``random:ARCH`` (a randomly initialised network, seeded, the baseline every number needs);
- ``hog`` or ``pixels`` (no network; see :mod:`headcam.eval.baselines`).

Every model has an ``identity`` hash: the feature cache is keyed by it, so two specs that name the
same weights share cached features and a changed checkpoint file never reuses stale ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision
from torch import nn

from headcam.console import UsageError
from headcam.eval import published
from headcam.train import checkpoint
from headcam.train.backbones import ARCHS, VITS, VitProbeFeatures, build_backbone, parse_vit_features

BASELINES = ("hog", "pixels")


@dataclass
class EvalModel:
    """A resolved ``--model``: a trunk (None for hog/pixels), its label and identity."""

    name: str
    kind: str  # "network" | "hog" | "pixels"
    identity: str
    trunk: nn.Module | None = None
    feat_dim: int | None = None
    arch: str | None = None
    source: dict[str, Any] = field(default_factory=dict)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _network(name: str, arch: str, small_stem: bool, state: dict[str, torch.Tensor] | None, identity: str,
             source: dict[str, Any], vit_features: str = "cls") -> EvalModel:
    trunk, dim = build_backbone(arch, small_stem=small_stem)
    if state is not None:
        missing, unexpected = trunk.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise UsageError(f"{source.get('path', name)}: weights do not fit {arch}: "
                             f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                             f"(e.g. {unexpected[:2]})")
    if arch in VITS and vit_features != "cls":
        trunk = VitProbeFeatures(trunk, *parse_vit_features(vit_features))
        dim, identity = trunk.dim, f"{identity}:vit-features={vit_features}"
    trunk.eval()
    for p in trunk.parameters():
        p.requires_grad_(False)
    return EvalModel(name=name, kind="network", identity=identity, trunk=trunk, feat_dim=dim, arch=arch,
                     source=source)


def load_model(spec: str, *, name: str | None = None, seed: int = 0, vit_features: str = "cls") -> EvalModel:
    """Resolve a ``--model`` spec (see the module docstring) into an :class:`EvalModel`; ``vit_features``
    picks a ViT's probe features (:func:`~headcam.train.backbones.parse_vit_features`; CNNs ignore it)."""
    parse_vit_features(vit_features)
    if spec in BASELINES:
        return EvalModel(name=name or spec, kind=spec, identity=f"baseline:{spec}:v1")
    if spec.startswith("random:"):
        arch = spec.split(":", 1)[1]
        if arch not in ARCHS:
            raise UsageError(f"random:{arch}: unknown architecture; supported: {', '.join(ARCHS)}")
        torch.manual_seed(seed)
        # the init depends on the seed and on torchvision's (timm's) init code: both are part of the identity
        identity = f"random:{arch}:seed{seed}:torchvision{torchvision.__version__}"
        if arch in VITS:
            identity += f":timm{timm.__version__}"
        return _network(name or spec, arch, False, None, identity, {"spec": spec, "seed": seed}, vit_features)
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"--model {spec}: not a checkpoint file, and not one of random:ARCH, "
                         f"{', '.join(BASELINES)}")
    try:
        ckpt = checkpoint.read(path)
    except checkpoint.CheckpointError as e:
        raise UsageError(str(e)) from None
    identity = f"file:{_file_sha256(path)}"
    # headcam-train always writes RUNDIR/checkpoint.pt: the run directory is the telling name
    label = name or (path.parent.name if path.stem == "checkpoint" and path.parent.name else path.stem)
    if checkpoint.is_headcam(ckpt):
        try:
            checkpoint.check(ckpt, path)
        except checkpoint.CheckpointError as e:
            raise UsageError(str(e)) from None
        arch = ckpt.get("arch")
        if arch not in ARCHS:
            raise UsageError(f"{path}: unknown architecture '{arch}' in checkpoint; supported: {', '.join(ARCHS)}")
        return _network(label, arch, bool(ckpt.get("small_stem", False)), ckpt["backbone"], identity,
                        {"path": str(path), "format": "headcam", "method": ckpt.get("method"),
                         "step": ckpt.get("step")}, vit_features)
    found = published.recognise(ckpt, str(path))
    if found is None:
        raise UsageError(f"{path}: not a headcam checkpoint (format '{checkpoint.FORMAT}') nor a published one "
                         "(baby-vision 'model_state_dict', DINO 'teacher' or MAE 'model')")
    return _network(label, found.arch, found.small_stem, found.state, identity, found.source, vit_features)
