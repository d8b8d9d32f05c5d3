"""What ``--model`` names: a frozen trunk to extract features from, or a hand-made baseline.

A model spec is one of

- a path to a headcam checkpoint (``{"format": "headcam-checkpoint", "arch", "small_stem", "backbone", ...}``);
- a path to a published checkpoint, loaded unchanged: baby-vision (ResNeXt-50 / MobileNetV2), the
  silicon-menagerie DINO and MAE files (ViTs, ResNeXt-50) or the eminorhan/video-models ``mae_*`` / ``vit_*``
  files (spatiotemporal ViT-H/14s; on images the image is repeated over the clip's frames); the layout and
  architecture are recognised from the key names and tensor shapes, no flags (:mod:`headcam.train.zoo`);
- ``random:ARCH`` (a randomly initialised network, seeded, the baseline every number needs);
- ``hog`` or ``pixels`` (no network; see :mod:`headcam.eval.baselines`);
- ``local-dir:PATH``, a folder in timm's pretrained layout (``config.json`` + ``model.safetensors``):
  ``headcam-export`` output, rebuilt from its ``headcam`` section as the trunk it was, or any timm folder whose
  trunk is a headcam architecture, recognised from its keys;
- ``hf-hub:ORG/NAME[@REV]``, such a folder as a Hugging Face Hub repository, and ``hf://ORG/REPO[@REV]/FILE``,
  one checkpoint file in a repository (silicon-menagerie hosts its ``.pth`` files so), read as a path is.
  Both go through ``huggingface_hub``'s cache (``HF_HUB_CACHE`` / ``HF_HOME``); with ``HF_HUB_OFFLINE=1``
  only what is cached is read, and anything else is a one-line error.

Every model has an ``identity`` hash: the feature cache is keyed by it, so two specs that name the
same weights share cached features and a changed checkpoint file never reuses stale ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headcam.console import UsageError

if TYPE_CHECKING:  # torch, timm and the trunks load in load_model: the CLI checks its arguments without them
    import torch
    from torch import nn

BASELINES = ("hog", "pixels")
LOCAL_DIR, HF_HUB, HF_FILE = "local-dir:", "hf-hub:", "hf://"
_REPO = r"[A-Za-z0-9][\w.-]*/[\w.-]+"
#: ``hf-hub:ORG/NAME[@REV]`` and ``hf://ORG/REPO[@REV]/PATH``: the repository, its revision and the file.
HUB_SPECS = {HF_HUB: re.compile(rf"(?P<repo>{_REPO})(?:@(?P<rev>[\w./-]+))?"),
             HF_FILE: re.compile(rf"(?P<repo>{_REPO})(?:@(?P<rev>[\w.-]+))?/(?P<file>[^@]*[^/@])")}
#: The files of a timm-layout folder that a hub repository must have (``headcam-export`` writes them).
TIMM_FILES = ("config.json", "model.safetensors")


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


def check_spec(spec: str) -> None:
    """What can be told of a ``--model`` without reading it (no torch): a path that is missing, a directory
    or an empty file is a UsageError, so a typo in the last ``--model`` stops the run before the first model
    is evaluated. ``random:ARCH`` names are checked when the model loads."""
    if spec in BASELINES or spec.startswith("random:"):
        return
    if spec.startswith(tuple(HUB_SPECS)):
        repo, revision, filename = _hub_parts(spec)
        _check_cached(spec, repo, revision, (filename,) if filename else TIMM_FILES)
        return
    if spec.startswith(LOCAL_DIR):
        folder = Path(spec[len(LOCAL_DIR):])
        missing = [f for f in TIMM_FILES if not (folder / f).is_file()]
        if not folder.is_dir() or missing:
            why = "not a folder" if not folder.is_dir() else f"no {' or '.join(missing)}"
            raise UsageError(f"--model {spec}: {why} (local-dir: names a folder with {' and '.join(TIMM_FILES)}, "
                             "as headcam-export writes)")
        return
    path = Path(spec)
    if path.is_dir():
        inside = path / "checkpoint.pt"
        hint = f"; did you mean {inside}?" if inside.is_file() else ""
        raise UsageError(f"--model {spec}: a directory, not a checkpoint file{hint}")
    if not path.exists():
        raise UsageError(f"--model {spec}: not found (a checkpoint file, or one of random:ARCH, "
                         f"{', '.join(BASELINES)})")
    if path.stat().st_size == 0:
        raise UsageError(f"--model {spec}: an empty file, not a checkpoint")


def _hub_parts(spec: str) -> tuple[str, str | None, str | None]:
    """(repository, revision or None, file or None) of an ``hf-hub:`` or ``hf://`` spec, or a UsageError."""
    prefix = next(p for p in HUB_SPECS if spec.startswith(p))
    m = HUB_SPECS[prefix].fullmatch(spec[len(prefix):])
    if m is None:
        form = "hf-hub:ORG/NAME[@REVISION]" if prefix == HF_HUB else "hf://ORG/REPO[@REVISION]/FILE"
        raise UsageError(f"--model {spec}: write it as {form}")
    return m["repo"], m["rev"], m.groupdict().get("file")


def _not_cached(spec: str, repo: str, revision: str | None, filename: str) -> UsageError:
    from huggingface_hub import constants

    where = f"{repo}@{revision}" if revision else repo
    return UsageError(f"--model {spec}: {filename} of {where} is not in the Hugging Face cache "
                      f"({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set: fetch it once online, or point "
                      "HF_HUB_CACHE / HF_HOME at a cache that has it")


def _check_cached(spec: str, repo: str, revision: str | None, files: tuple[str, ...]) -> None:
    """Offline (``HF_HUB_OFFLINE``), a Hub file missing from the cache is known before any model loads."""
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        return
    for filename in files:
        if not isinstance(try_to_load_from_cache(repo, filename, revision=revision), str):
            raise _not_cached(spec, repo, revision, filename)


def _hub_file(spec: str, repo: str, filename: str, revision: str | None) -> Path:
    """``filename`` of Hub repository ``repo`` through ``huggingface_hub``'s cache (downloaded unless cached or
    ``HF_HUB_OFFLINE`` is set), or a one-line UsageError saying why not."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo}@{revision}" if revision else repo
    try:
        return Path(hf_hub_download(repo, filename, revision=revision))
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise _not_cached(spec, repo, revision, filename) from None
        raise UsageError(f"--model {spec}: the Hub cannot be reached and {filename} of {where} is not in the "
                         f"Hugging Face cache ({constants.HF_HUB_CACHE})") from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise UsageError(f"--model {spec}: {type(e).__name__.removesuffix('Error')} {where} on the Hub (private "
                         "or gated repositories need `hf auth login`)") from None
    except EntryNotFoundError:
        raise UsageError(f"--model {spec}: {where} has no file {filename}") from None
    except (HfHubHTTPError, HFValidationError) as e:
        raise UsageError(f"--model {spec}: {str(e).splitlines()[0]}") from None


def _read_checkpoint(path: Path) -> Any:
    """The object in a checkpoint file, or a one-line UsageError saying why it cannot be read."""
    from headcam.train import checkpoint

    check_spec(str(path))
    why = checkpoint.not_torch_file(path)
    if why:
        raise UsageError(f"cannot read checkpoint {path}: not a torch checkpoint file ({why})")
    try:
        return checkpoint.read(path)
    except checkpoint.CheckpointError as e:
        raise UsageError(str(e)) from None


def _network(name: str, arch: str, small_stem: bool, state: dict[str, torch.Tensor] | None, identity: str,
             source: dict[str, Any], vit_features: str = "cls", pos_interp: str = "dino") -> EvalModel:
    """``pos_interp``: how a ViT resamples its positions at other sides, the way of the code its weights came
    from (MAE's ``interpolate_pos_embed`` or DINO's ``interpolate_pos_encoding``)."""
    from headcam.train.backbones import VIDEO_VITS, VITS, VitProbeFeatures, build_backbone, parse_vit_features
    from headcam.train.video_vit import clip_shape

    # a video ViT's clip length and tubelet depth are its weights' (its images repeat over that many frames)
    clip = clip_shape(state) if arch in VIDEO_VITS and state is not None and "pos_embed_temporal" in state else {}
    trunk, dim = build_backbone(arch, small_stem=small_stem, pos_interp=pos_interp, **clip)
    if state is not None:
        missing, unexpected = trunk.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise UsageError(f"{source.get('path', name)}: weights do not fit {arch}: "
                             f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                             f"(e.g. {unexpected[:2]})")
    if arch in VIDEO_VITS and vit_features != "cls":
        raise UsageError(f"--vit-features {vit_features}: a video ViT ({arch}) gives its final-norm CLS token only, "
                         "as the reference's models_vit does; leave --vit-features at cls")
    if arch in VITS and vit_features != "cls":
        trunk = VitProbeFeatures(trunk, *parse_vit_features(vit_features))
        dim, identity = trunk.dim, f"{identity}:vit-features={vit_features}"
    trunk.eval()
    for p in trunk.parameters():
        p.requires_grad_(False)
    return EvalModel(name=name, kind="network", identity=identity, trunk=trunk, feat_dim=dim, arch=arch,
                     source=source)


def _label(path: Path) -> str:
    """A model's default name: headcam-train always writes RUNDIR/checkpoint.pt, so there the run directory is
    the telling name, elsewhere the file's stem."""
    return path.parent.name if path.stem == "checkpoint" and path.parent.name else path.stem


def _timm_folder(spec: str, name: str | None, vit_features: str) -> EvalModel:
    """A ``local-dir:`` or ``hf-hub:`` folder in timm's layout: the trunk its ``headcam`` section names (as
    headcam-export wrote it), else the headcam architecture its keys match, with timm's classifier dropped."""
    from headcam.train import checkpoint, zoo
    from headcam.train.archs import ARCHS
    from headcam.train.export import read_export

    if spec.startswith(HF_HUB):
        repo, revision, _ = _hub_parts(spec)
        files = [_hub_file(spec, repo, f, revision) for f in TIMM_FILES]
        folder = files[0].parent  # one snapshot folder of huggingface_hub's cache holds both
        label = name or repo.split("/")[-1]
    else:
        check_spec(spec)
        folder = Path(spec[len(LOCAL_DIR):])
        label = name or folder.resolve().name
    found = read_export(folder, f"--model {spec}")
    identity = f"file:{checkpoint.file_sha256(found.weights)}"
    if found.headcam is not None:
        ours, made = found.headcam, found.headcam.get("source") or {}
        arch, small_stem, pos_interp = ours.get("arch"), bool(ours.get("small_stem")), ours.get("pos_interp") or "dino"
        if arch not in ARCHS:
            raise UsageError(f"--model {spec}: unknown architecture '{arch}' in config.json; supported: "
                             f"{', '.join(ARCHS)}")
        state = found.state
        source = {"path": spec, "format": "headcam-export", "exported_from": made.get("format"),
                  "method": made.get("method"), "step": made.get("step"), "pos_interp": pos_interp}
    else:  # a timm folder headcam did not write: its trunk must be one of headcam's, by its keys and shapes
        arch, small_stem = zoo.recognise_arch(found.state, f"--model {spec}")
        pos_interp = "dino"
        state = zoo.fit_position_embedding(zoo.trunk_only(found.state), arch, pos_interp)
        source = {"path": spec, "format": "timm", "architecture": found.config.get("architecture"),
                  "pos_interp": pos_interp}
    return _network(label, arch, small_stem, state, identity, source, vit_features, pos_interp)


def load_model(spec: str, *, name: str | None = None, seed: int = 0, vit_features: str = "cls") -> EvalModel:
    """Resolve a ``--model`` spec (see the module docstring) into an :class:`EvalModel`; ``vit_features``
    picks a ViT's probe features (:func:`~headcam.train.backbones.parse_vit_features`; CNNs ignore it)."""
    import timm
    import torch
    import torchvision

    from headcam.train import checkpoint, zoo
    from headcam.train.backbones import ARCHS, VIDEO_VITS, VITS, parse_vit_features, pos_interp_for

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
        if arch in VITS or arch in VIDEO_VITS:  # video ViTs: timm's blocks, re-initialised by headcam's video_vit
            identity += f":timm{timm.__version__}"
        return _network(name or spec, arch, False, None, identity, {"spec": spec, "seed": seed}, vit_features)
    if spec.startswith((LOCAL_DIR, HF_HUB)):
        return _timm_folder(spec, name, vit_features)
    if spec.startswith(HF_FILE):
        repo, revision, filename = _hub_parts(spec)
        path, origin = _hub_file(spec, repo, filename, revision), spec
        label = name or _label(Path(filename))
    else:
        path = Path(spec)
        origin, label = str(path), name or _label(path)
    ckpt = _read_checkpoint(path)
    identity = f"file:{checkpoint.file_sha256(path)}"
    if checkpoint.is_headcam(ckpt):
        try:
            checkpoint.check(ckpt, path)
        except checkpoint.CheckpointError as e:
            raise UsageError(str(e)) from None
        arch = ckpt.get("arch")
        if arch not in ARCHS:
            raise UsageError(f"{path}: unknown architecture '{arch}' in checkpoint; supported: {', '.join(ARCHS)}")
        trained = ckpt.get("config") or {}
        pos_interp = trained.get("pos_interp") or pos_interp_for(ckpt.get("method"))  # as the run resampled
        return _network(label, arch, bool(ckpt.get("small_stem", False)), ckpt["backbone"], identity,
                        {"path": origin, "format": "headcam", "method": ckpt.get("method"),
                         "step": ckpt.get("step"), "pos_interp": pos_interp}, vit_features, pos_interp)
    found = zoo.recognise(ckpt, origin)
    if found is None:
        raise UsageError(f"{path}: not a headcam checkpoint (format '{checkpoint.FORMAT}') nor a published one "
                         "(baby-vision 'model_state_dict', DINO 'teacher' or MAE 'model')")
    return _network(label, found.arch, found.small_stem, found.state, identity, found.source, vit_features,
                    found.source.get("pos_interp", "dino"))
