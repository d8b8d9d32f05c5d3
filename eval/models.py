"""What ``--model`` names: a frozen trunk to extract features from, or a hand-made baseline.

A model spec is one of

- a path to a headcam checkpoint (``{"format": "headcam-checkpoint", "arch", "small_stem", "backbone", ...}``);
- a path to a published baby-vision checkpoint (``{"model_state_dict": ...}`` with DataParallel's
  ``module.`` prefix, torchvision ``resnext50_32x4d`` with ``fc`` or ``mobilenet_v2`` with a
  ``classifier``); the architecture is recognised from the key names and tensor shapes, no flags;
- ``random:ARCH`` (a randomly initialised network, seeded, the baseline every number needs);
- ``hog`` or ``pixels`` (no network; see :mod:`headcam.eval.baselines`).

Every model has an ``identity`` hash: the feature cache is keyed by it, so two specs that name the
same weights share cached features and a changed checkpoint file never reuses stale ones.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from headcam.console import UsageError
from headcam.train import checkpoint
from headcam.train.backbones import ARCHS, apply_small_stem, build_backbone

BASELINES = ("hog", "pixels")
HEAD_PREFIXES = ("fc.", "classifier.")


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


def strip_prefix(state: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop DataParallel/DDP's ``module.`` prefix (present on every key, or on none)."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def _trunk_signature(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()
            if not k.startswith(HEAD_PREFIXES) and not k.endswith("num_batches_tracked")}


@functools.cache
def _arch_signature(arch: str, small_stem: bool) -> dict[str, tuple[int, ...]]:
    """Trunk parameter names and shapes of a supported arch, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)(weights=None)
        if small_stem:
            model = apply_small_stem(model)
    return _trunk_signature(model.state_dict())


def recognise_arch(state: dict[str, torch.Tensor], origin: str) -> tuple[str, bool]:
    """(arch, small_stem) whose trunk has exactly these parameter names and shapes."""
    found = _trunk_signature(state)
    for arch in ARCHS:
        for small_stem in (False, True):
            if small_stem and arch.startswith("mobilenet"):
                continue
            if _arch_signature(arch, small_stem) == found:
                return arch, small_stem
    sample = ", ".join(f"{k} {list(v)}" for k, v in list(found.items())[:3])
    raise UsageError(f"{origin}: unknown architecture in checkpoint; supported: {', '.join(ARCHS)}; "
                     f"found {len(found)} trunk tensors ({sample}, ...)")


def _network(name: str, arch: str, small_stem: bool, state: dict[str, torch.Tensor] | None, identity: str,
             source: dict[str, Any]) -> EvalModel:
    trunk, dim = build_backbone(arch, small_stem=small_stem)
    if state is not None:
        trunk_state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
        missing, unexpected = trunk.load_state_dict(trunk_state, strict=False)
        if missing or unexpected:
            raise UsageError(f"{source.get('path', name)}: weights do not fit {arch}: "
                             f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                             f"(e.g. {unexpected[:2]})")
    trunk.eval()
    for p in trunk.parameters():
        p.requires_grad_(False)
    return EvalModel(name=name, kind="network", identity=identity, trunk=trunk, feat_dim=dim, arch=arch,
                     source=source)


def load_model(spec: str, *, name: str | None = None, seed: int = 0) -> EvalModel:
    """Resolve a ``--model`` spec (see the module docstring) into an :class:`EvalModel`."""
    if spec in BASELINES:
        return EvalModel(name=name or spec, kind=spec, identity=f"baseline:{spec}:v1")
    if spec.startswith("random:"):
        arch = spec.split(":", 1)[1]
        if arch not in ARCHS:
            raise UsageError(f"random:{arch}: unknown architecture; supported: {', '.join(ARCHS)}")
        torch.manual_seed(seed)
        # the init depends on the seed and on torchvision's init code: both are part of the identity
        identity = f"random:{arch}:seed{seed}:torchvision{torchvision.__version__}"
        return _network(name or spec, arch, False, None, identity, {"spec": spec, "seed": seed})
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
                         "step": ckpt.get("step")})
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model_state_dict"), dict):
        state = strip_prefix(ckpt["model_state_dict"])
        arch, small_stem = recognise_arch(state, str(path))
        head = state.get("fc.weight", state.get("classifier.weight", state.get("classifier.1.weight")))
        return _network(label, arch, small_stem, state, identity,
                        {"path": str(path), "format": "baby-vision",
                         "n_out": int(head.shape[0]) if head is not None else None})
    raise UsageError(f"{path}: not a headcam checkpoint (format '{checkpoint.FORMAT}') nor a baby-vision one "
                     f"(a dict with 'model_state_dict')")
