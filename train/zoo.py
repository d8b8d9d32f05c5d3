"""Published checkpoints, loaded unchanged: the layout is recognised from the file's keys and shapes.

It lives in ``train/`` beside the checkpoint format, so ``headcam-export`` (train) and ``headcam-eval``
(eval) both read it without an import against the ``eval -> train`` direction.

Layouts (SPEC §8 and §10):

- **baby-vision** (Orhan et al. 2020): ``{"model_state_dict": ...}``, DataParallel's ``module.``
  prefix, torchvision ``resnext50_32x4d`` with ``fc`` or ``mobilenet_v2`` with ``classifier``.
- **silicon-menagerie DINO** (``dino_say_vitb14.pth``, ``dino_y_resnext50.pth``, ...): DINO training
  checkpoints ``{student, teacher, optimizer, it, args, dino_loss}``; the trunk is the teacher with
  ``module.`` / ``backbone.`` / ``encoder.`` stripped and the DINO ``head.*`` dropped.
- **silicon-menagerie MAE** (``mae_s_vitl16.pth``, ...): ``{model, optimizer, it, args, scaler}``; the
  encoder is ``cls_token``, ``pos_embed``, ``patch_embed.*``, ``blocks.*``, ``norm.*``; the decoder
  (``decoder_*``) and ``mask_token`` are dropped.

- **eminorhan/video-models** (Orhan et al. 2024; trained by eminorhan/mae_st): ``{model, optimizer, epoch,
  scaler, args}``, spatiotemporal ViTs (:mod:`headcam.train.video_vit`, whose parameter names are the reference's)
  recognised by ``pos_embed_spatial``. ``mae_*`` (``{y}_none.pth``, also what ``vit_{y}_none`` loads): the MAE
  with its decoder (``decoder_*``, ``mask_token``), dropped; ``vit_*`` (``{y}_{ssv2,kinetics}-{10,50}shot.pth``):
  the fine-tuned ViT, its ``head.*`` dropped. Clip length and tubelet depth come from the tensors
  (:func:`~headcam.train.video_vit.clip_shape`).

ViT sizes come from the tensors (width from ``cls_token``, patch from ``patch_embed``, depth from
the block count); CNNs are matched against every supported torchvision trunk built on the meta
device. Nothing here needs a flag from the user.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
import torchvision

from headcam.console import UsageError
from headcam.train.backbones import (
    ARCHS,
    CNN_ARCHS,
    VIDEO_VITS,
    VITS,
    apply_small_stem,
    build_backbone,
    build_vit,
    pos_interp_for,
    resample_pos_embed,
)
from headcam.train.video_vit import clip_shape

#: Classifier / projection heads that are not part of a trunk (torchvision readouts, DINO's head).
HEAD_PREFIXES = ("fc.", "classifier.", "head.")
#: Wrappers around a trunk's own parameter names in published files (DataParallel, DINO, MAE).
WRAPPER_PREFIXES = ("module.", "backbone.", "encoder.")
MAE_DROPPED = ("decoder_", "mask_token")


@dataclass
class PublishedTrunk:
    """What a published file holds for evaluation: the trunk's arch and weights, and where it came from."""

    arch: str
    small_stem: bool
    state: dict[str, torch.Tensor]
    source: dict[str, Any]


def strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (``module.backbone.blocks.0...`` -> ``blocks.0...``) from every key."""
    out = {}
    for k, v in state.items():
        while k.startswith(WRAPPER_PREFIXES):
            k = k.split(".", 1)[1]
        out[k] = v
    return out


def trunk_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES + MAE_DROPPED)}


def _signature(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in trunk_only(state).items() if not k.endswith("num_batches_tracked")}


@functools.cache
def _cnn_signature(arch: str, small_stem: bool) -> dict[str, tuple[int, ...]]:
    """Trunk parameter names and shapes of a torchvision arch, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)(weights=None)
        if small_stem:
            model = apply_small_stem(model)
    return _signature(model.state_dict())


@functools.cache
def _vit_signature(arch: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: v for k, v in _signature(build_vit(arch).state_dict()).items() if k != "pos_embed"}


@functools.cache
def _video_signature(arch: str, num_frames: int, t_patch_size: int) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net, _ = build_backbone(arch, num_frames=num_frames, t_patch_size=t_patch_size)
    return {k: v for k, v in _signature(net.state_dict()).items() if k != "pos_embed_spatial"}


def recognise_arch(state: dict[str, torch.Tensor], origin: str) -> tuple[str, bool]:
    """(arch, small_stem) whose trunk has exactly these parameter names and shapes."""
    found = _signature(state)
    if "pos_embed_spatial" in found and "patch_embed.proj.weight" in found and "pos_embed_temporal" in found:
        clip = clip_shape(state)
        no_pos = {k: v for k, v in found.items() if k != "pos_embed_spatial"}  # resampled on load, as the grid
        for arch in VIDEO_VITS:
            if _video_signature(arch, **clip) == no_pos:
                return arch, False
    if "cls_token" in found:
        no_pos = {k: v for k, v in found.items() if k != "pos_embed"}  # the grid may differ: resampled on load
        for arch in VITS:
            if _vit_signature(arch) == no_pos:
                return arch, False
    for arch in CNN_ARCHS:
        for small_stem in (False, True):
            if small_stem and arch.startswith("mobilenet"):
                continue
            if _cnn_signature(arch, small_stem) == found:
                return arch, small_stem
    sample = ", ".join(f"{k} {list(v)}" for k, v in list(found.items())[:3])
    raise UsageError(f"{origin}: unknown architecture in checkpoint; supported: {', '.join(ARCHS)}; "
                     f"found {len(found)} trunk tensors ({sample}, ...)")


def fit_position_embedding(state: dict[str, torch.Tensor], arch: str, pos_interp: str) -> dict[str, torch.Tensor]:
    """A ViT file trained at another resolution has another patch grid: resample it to the 224 px grid the
    trunk is built with, the way its reference does (``pos_interp``: MAE's ``interpolate_pos_embed`` does
    exactly this on loading; DINO would instead resample the stored grid straight to the input's, so a DINO
    file with a non-224 grid is exact only when evaluated at 224 px); the trunk resamples again, the same
    way, for whatever size it is fed."""
    if arch in VIDEO_VITS:  # eminorhan/mae_st's interpolate_pos_encoding: DINO's way, spatial rows only
        grid = 224 // VIDEO_VITS[arch].patch
        return {**state, "pos_embed_spatial": resample_pos_embed(state["pos_embed_spatial"], (grid, grid), "dino",
                                                                 prefix=0)}
    if arch not in VITS or "pos_embed" not in state:
        return state
    grid = 224 // VITS[arch].patch
    return {**state, "pos_embed": resample_pos_embed(state["pos_embed"], (grid, grid), pos_interp)}


def recognise(ckpt: Any, origin: str) -> PublishedTrunk | None:
    """The trunk of a published checkpoint (any layout above), or None if ``ckpt`` is none of them."""
    if not isinstance(ckpt, dict):
        return None
    if isinstance(ckpt.get("model_state_dict"), dict):
        fmt, raw = "baby-vision", ckpt["model_state_dict"]
    elif isinstance(ckpt.get("teacher"), dict):
        fmt, raw = "dino", ckpt["teacher"]
    elif isinstance(ckpt.get("model"), dict) and any(k.endswith("pos_embed_spatial") for k in ckpt["model"]):
        with_decoder = any(k.startswith(MAE_DROPPED) for k in strip_wrappers(ckpt["model"]))
        fmt, raw = ("video-models-mae" if with_decoder else "video-models-vit"), ckpt["model"]
    elif isinstance(ckpt.get("model"), dict) and any(k.endswith("cls_token") for k in ckpt["model"]):
        fmt, raw = "mae", ckpt["model"]
    else:
        return None
    odd = next((k for k, v in raw.items() if not isinstance(v, torch.Tensor)), None)
    if odd is not None:  # a damaged or foreign file in a known layout: one line, not a traceback
        raise UsageError(f"{origin}: a {fmt} layout whose weights are not all tensors ('{odd}' is a "
                         f"{type(raw[odd]).__name__})")
    state = strip_wrappers(raw)
    arch, small_stem = recognise_arch(state, origin)
    head = next((state[k] for k in ("fc.weight", "classifier.weight", "classifier.1.weight", "head.weight")
                 if k in state and state[k].ndim == 2), None)
    source = {"path": origin, "format": fmt, "n_out": int(head.shape[0]) if head is not None else None}
    if "it" in ckpt:
        source["step"] = int(ckpt["it"])
    if isinstance(ckpt.get("epoch"), int):
        source["epoch"] = ckpt["epoch"]
    if arch in VIDEO_VITS:
        source.update(clip_shape(state))  # build it with them: build_backbone(..., num_frames=, t_patch_size=)
    elif arch in VITS:
        source["pos_interp"] = pos_interp_for(fmt)  # build the trunk with it: build_backbone(..., pos_interp=)
    return PublishedTrunk(arch, small_stem, fit_position_embedding(trunk_only(state), arch, pos_interp_for(fmt)),
                          source)
