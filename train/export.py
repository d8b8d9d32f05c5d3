"""``headcam-export CHECKPOINT OUT/``: a trunk leaves headcam in timm's pretrained layout.

``OUT/`` gets three files, the layout ``timm.create_model("local-dir:OUT", pretrained=True, num_classes=0)``
and the Hugging Face Hub (``hf-hub:ORG/NAME`` once uploaded) read:

- ``model.safetensors``: the trunk alone (no heads, optimiser or queue), under timm's parameter names;
- ``config.json``: ``architecture`` (timm's name), ``num_classes`` 0, ``num_features``, ``global_pool``,
  ``model_args`` (what timm's entry point needs beyond its defaults) and ``pretrained_cfg`` with headcam's
  eval view (input size, ImageNet mean and std, bilinear, ``crop_pct`` 0.875, centre crop), plus a
  ``headcam`` section timm ignores (arch, small stem, ViT position resampling, provenance) from which
  ``headcam-eval --model local-dir:OUT`` rebuilds the very trunk headcam evaluates;
- ``README.md``: the model card (method, data, steps, resolved training config, results of ``--report``).

timm's equivalents give headcam's features exactly (tests/train/test_export.py):

- ``resnet18``, ``resnet50``, ``resnext50_32x4d``: the same names in timm, the same module tree and
  parameter names as torchvision's (``conv1``, ``bn1``, ``layer1..4``; the stride on a bottleneck's 3x3 in both);
- ``mobilenet_v2``: timm's ``mobilenetv2_100``, the same layers in the same order under other names,
  renamed position by position (every shape checked);
- ViTs: timm's ``VisionTransformer`` (headcam's ViT is one): CLS token after the final norm
  (``global_pool`` token, no ``fc_norm``), position rows stored for 224 px. timm has no plain ViT-B/14, so
  ``vit_base_patch14`` is ``vit_base_patch16_224`` with ``patch_size`` 14. At sides other than 224 px timm
  resamples the position table its own way (antialiased bicubic), not as DINO / MAE (:mod:`headcam.train.backbones`).

A ResNet with ``small_stem`` has none: timm's ResNet stems are a 7x7 stride-2 convolution or three 3x3 ones,
each followed by a max-pool, never one 3x3 stride-1 convolution without it. Its card shows the three lines
that load it with torchvision.

Sources are read with safe loading only: a headcam checkpoint, or a published one (baby-vision,
silicon-menagerie), recognised from its keys as ``headcam-eval`` recognises it.
"""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headcam.console import ArgumentParser, UsageError, run_main
from headcam.train.archs import VIDEO_VITS

if TYPE_CHECKING:  # torch, timm and safetensors load after the arguments are checked
    import torch

PROG = "headcam-export"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
#: headcam arch -> timm architecture, for CNNs whose parameter names timm shares or renames in order.
TIMM_CNNS = {"resnet18": "resnet18", "resnet50": "resnet50", "resnext50_32x4d": "resnext50_32x4d",
             "mobilenet_v2": "mobilenetv2_100"}
#: ViTs by (patch, width): timm's entry point whose defaults match, ``model_args`` give the rest.
TIMM_VITS = {(16, 384): "vit_small_patch16_224", (16, 768): "vit_base_patch16_224",
             (14, 768): "vit_base_patch16_224", (16, 1024): "vit_large_patch16_224"}
NO_TIMM_SMALL_STEM = ("timm's ResNet stems are a 7x7 stride-2 convolution or three 3x3 ones, each followed by a "
                      "max-pool; this trunk's CIFAR stem (one 3x3 stride-1 convolution, no max-pool) is none of them")


@dataclass
class Trunk:
    """A trunk to export: headcam's arch, its ``build_backbone`` weights and where they came from."""

    arch: str
    small_stem: bool
    state: dict[str, torch.Tensor]
    pos_interp: str = ""  # ViTs: how headcam resamples the position table (backbones.POS_INTERPS)
    origin: dict[str, Any] = field(default_factory=dict)  # format, method, step, config, file, sha256


@dataclass(frozen=True)
class TimmArch:
    """timm's name for a trunk and the ``model_args`` that make it headcam's."""

    architecture: str
    model_args: dict[str, Any]
    global_pool: str
    first_conv: str
    classifier: str


def timm_arch(arch: str, small_stem: bool) -> TimmArch | None:
    """timm's equivalent of ``build_backbone(arch, small_stem)``, or None where timm has none (small stem, and
    spatiotemporal ViTs: timm has no tubelet ViT)."""
    from headcam.train.archs import VITS

    if arch in VIDEO_VITS:
        return None
    if arch in VITS:
        v = VITS[arch]
        base = TIMM_VITS.get((v.patch, v.width), "vit_small_patch16_224")
        args = {"img_size": 224, "patch_size": v.patch, "embed_dim": v.width, "depth": v.depth, "num_heads": v.heads,
                "mlp_ratio": 4.0, "qkv_bias": True, "class_token": True, "no_embed_class": False,
                "global_pool": "token", "fc_norm": False, "dynamic_img_size": True}
        return TimmArch(base, args, "token", "patch_embed.proj", "head")
    if small_stem:
        return None
    if arch == "mobilenet_v2":
        return TimmArch(TIMM_CNNS[arch], {}, "avg", "conv_stem", "classifier")
    return TimmArch(TIMM_CNNS[arch], {}, "avg", "conv1", "fc")


@functools.cache
def _mobilenet_names() -> tuple[tuple[str, str], ...]:
    """(torchvision name, timm name) of every mobilenet_v2 tensor: both register the same layers in the same
    order, so the two state dicts pair up by position; every pair's shape is checked."""
    import timm
    import torch
    import torchvision

    with torch.device("meta"):
        tv = torchvision.models.mobilenet_v2(weights=None)
        tv.classifier = torch.nn.Identity()
        tm = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=0)
    ours, theirs = tv.state_dict(), tm.state_dict()
    if [tuple(v.shape) for v in ours.values()] != [tuple(v.shape) for v in theirs.values()]:
        raise RuntimeError("torchvision's mobilenet_v2 and timm's mobilenetv2_100 no longer pair up tensor by tensor")
    return tuple(zip(ours, theirs, strict=True))


def to_timm_names(arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """headcam's (torchvision's / timm's) parameter names -> the exported file's (timm's)."""
    if arch != "mobilenet_v2":
        return dict(state)
    return {theirs: state[ours] for ours, theirs in _mobilenet_names()}


def from_timm_names(arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_timm_names`."""
    if arch != "mobilenet_v2":
        return dict(state)
    return {ours: state[theirs] for ours, theirs in _mobilenet_names() if theirs in state}


def read_trunk(path: Path) -> Trunk:
    """The trunk of a headcam checkpoint or of a published one, with safe loading only."""
    from headcam.train import checkpoint, zoo
    from headcam.train.archs import ARCHS
    from headcam.train.backbones import pos_interp_for

    why = checkpoint.not_torch_file(path)
    if why:
        raise UsageError(f"cannot read checkpoint {path}: not a torch checkpoint file ({why})")
    try:
        ckpt = checkpoint.read(path)
    except checkpoint.CheckpointError as e:
        raise UsageError(str(e)) from None
    origin: dict[str, Any] = {"file": path.name, "sha256": checkpoint.file_sha256(path)}
    if checkpoint.is_headcam(ckpt):
        try:
            checkpoint.check(ckpt, path)
        except checkpoint.CheckpointError as e:
            raise UsageError(str(e)) from None
        if ckpt.get("arch") not in ARCHS:
            raise UsageError(f"{path}: unknown architecture '{ckpt.get('arch')}'; supported: {', '.join(ARCHS)}")
        config = ckpt.get("config") or {}
        origin.update(format="headcam", method=ckpt.get("method"), step=ckpt.get("step"), config=config)
        return Trunk(ckpt["arch"], bool(ckpt.get("small_stem")), ckpt["backbone"],
                     config.get("pos_interp") or pos_interp_for(ckpt.get("method")), origin)
    found = zoo.recognise(ckpt, str(path))
    if found is None:
        raise UsageError(f"{path}: not a headcam checkpoint nor a published one (baby-vision 'model_state_dict', "
                         "DINO 'teacher' or MAE 'model')")
    origin.update(format=found.source["format"], step=found.source.get("step"))
    return Trunk(found.arch, found.small_stem, found.state, found.source.get("pos_interp", ""), origin)


def built(trunk: Trunk) -> tuple[torch.nn.Module, int]:
    """The trunk as ``headcam-eval`` builds it, weights loaded strictly, in eval mode, and its feature size."""
    from headcam.train.backbones import build_backbone
    from headcam.train.video_vit import clip_shape

    clip = clip_shape(trunk.state) if trunk.arch in VIDEO_VITS else {}  # its clip length is its weights'
    net, dim = build_backbone(trunk.arch, trunk.small_stem, pos_interp=trunk.pos_interp, **clip)
    try:
        net.load_state_dict(trunk.state)
    except RuntimeError as e:
        raise UsageError(f"the weights do not fit {trunk.arch}: {str(e).splitlines()[1].strip()}") from None
    return net.eval(), dim


def pretrained_cfg(size: int, timm: TimmArch | None) -> dict[str, Any]:
    """timm's preprocessing fields for headcam's eval view (``headcam-eval --size``: short side size / 0.875,
    bilinear, centre crop, ImageNet normalisation), read from the ``eval`` recipe."""
    from headcam.pipelines.spec import resolve_spec

    view = resolve_spec("eval")
    cfg = {"tag": "headcam", "custom_load": False, "input_size": [3, size, size], "fixed_input_size": False,
           "interpolation": "bilinear", "crop_pct": view.resize_ratio, "crop_mode": "center",
           "mean": list(view.mean), "std": list(view.std), "num_classes": 0}
    if timm is not None:
        cfg.update(first_conv=timm.first_conv, classifier=timm.classifier)
    return cfg


def config_json(trunk: Trunk, dim: int, size: int) -> dict[str, Any]:
    """``config.json``: timm's pretrained layout plus the ``headcam`` section (module docstring)."""
    from headcam import __version__

    timm = timm_arch(trunk.arch, trunk.small_stem)
    source = {k: v for k, v in trunk.origin.items() if k != "config"}
    ours = {"arch": trunk.arch, "small_stem": trunk.small_stem, "feat_dim": dim, "source": source,
            "headcam_version": __version__}
    if trunk.pos_interp:
        ours["pos_interp"] = trunk.pos_interp
    video = trunk.arch in VIDEO_VITS  # a spatiotemporal ViT (headcam.train.video_vit): timm has none
    cfg: dict[str, Any] = {"architecture": timm.architecture if timm else trunk.arch if video
                           else f"{trunk.arch}_small_stem", "num_classes": 0, "num_features": dim,
                           "global_pool": timm.global_pool if timm else "token" if video else "avg"}
    if timm and timm.model_args:
        cfg["model_args"] = timm.model_args
    cfg["pretrained_cfg"] = pretrained_cfg(size, timm)
    cfg["headcam"] = ours
    return cfg


def _input_size(trunk: Trunk) -> int:
    size = trunk.origin.get("config", {}).get("size")
    return size if isinstance(size, int) and size > 0 else 224


def read_reports(dirs: list[Path]) -> list[dict[str, Any]]:
    """The ``report.json`` of each ``headcam-eval`` report directory, checked before anything is loaded."""
    reports = []
    for d in dirs:
        path = d / "report.json"
        if not path.is_file():
            raise UsageError(f"--report {d}: no report.json (not a headcam-eval report directory)")
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"--report {d}: report.json is not valid JSON ({e})") from None
        if not isinstance(report, dict) or report.get("format") != "headcam-eval-report":
            raise UsageError(f"--report {d}: report.json is not a headcam-eval report")
        reports.append(report)
    return reports


RESULT_COLUMNS = ("model", "protocol", "probe", "recipe", "top1", "top5", "best_top1", "n_train", "n_test")


def results_markdown(reports: list[dict[str, Any]]) -> list[str]:
    """The card's evaluation section: one table per report, its command, data and settings."""
    lines = []
    for report in reports:
        rows = report.get("results") or []
        columns = [c for c in RESULT_COLUMNS if any(c in r for r in rows)]
        lines += [f"`headcam-eval {report.get('command', '')}` on `{report.get('data', '')}` "
                  f"(view {report.get('size', '')} px, {report.get('created', '')}):", ""]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(f"{r[c]:.2f}" if isinstance(r.get(c), float) else str(r.get(c, ""))
                                    for c in columns) + " |" for r in rows]
        lines.append("")
    return lines


def load_lines(trunk: Trunk, timm: TimmArch | None) -> list[str]:
    """The Python lines that load ``OUT`` (run in ``OUT``, or put its path in)."""
    if timm is not None:
        return ["import timm", 'model = timm.create_model("local-dir:.", pretrained=True, num_classes=0).eval()',
                "features = model(images)  # B x 3 x H x W, normalised as pretrained_cfg says -> B x num_features"]
    if trunk.arch in VIDEO_VITS:
        from headcam.train.video_vit import clip_shape

        clip = ", ".join(f"{k}={v}" for k, v in clip_shape(trunk.state).items())
        return ["from headcam.train.backbones import build_backbone; from safetensors.torch import load_file",
                f'model, dim = build_backbone("{trunk.arch}", {clip})',
                'model.load_state_dict(load_file("model.safetensors")); model.eval()',
                "features = model(clips)  # B x 3 x T x H x W clips, or B x 3 x H x W images -> B x dim"]
    return ["import torch, torchvision; from safetensors.torch import load_file",
            f"model = torchvision.models.{trunk.arch}(); model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False); "
            "model.maxpool = model.fc = torch.nn.Identity()",
            'model.load_state_dict(load_file("model.safetensors")); model.eval()']


def card(trunk: Trunk, dim: int, config: dict[str, Any], reports: list[dict[str, Any]], name: str) -> str:
    """The model card, ``README.md``, with Hugging Face's front matter."""
    import yaml

    timm = timm_arch(trunk.arch, trunk.small_stem)
    o, pcfg = trunk.origin, config["pretrained_cfg"]
    size = pcfg["input_size"][1]
    front = ["---", "tags:", "- image-feature-extraction", "- headcam"] + (["- timm", "library_name: timm"] if timm
                                                                             else []) + ["---", ""]
    if o["format"] == "headcam":
        trained = o.get("config", {})
        what = (f"A `{trunk.arch}` trunk{' (small stem)' if trunk.small_stem else ''} trained by headcam's "
                f"`{o.get('method')}` for {o.get('step')} optimiser steps on `{trained.get('data', '?')}` "
                f"(split `{trained.get('split', '?')}`, {trained.get('size', '?')} px views).")
    else:
        what = (f"The `{trunk.arch}` trunk of a published {o['format']} checkpoint (`{o['file']}`"
                + (f", step {o['step']}" if o.get("step") is not None else "") + "), exported unchanged.")
    out = front + [f"# {name}", "", what, "",
                   f"Features: {dim} per image, the "
                   + ("CLS token after the final norm." if trunk.arch.startswith("vit") else "global average pool "
                      "of the last stage.") + " The heads, optimiser and training state are not in this folder.",
                   "", "## Load it", "", "```python", *load_lines(trunk, timm), "```", ""]
    if timm is None:
        why = "timm has no spatiotemporal (tubelet) ViT" if trunk.arch in VIDEO_VITS else NO_TIMM_SMALL_STEM
        out += [f"timm has no equivalent of this trunk: {why}.", ""]
    else:
        out += [f"timm architecture `{timm.architecture}`"
                + (" with the `model_args` of config.json" if timm.model_args else "") + "; the weights give "
                "headcam's features exactly." + (f" At sides other than 224 px timm resamples the position table "
                f"with its antialiased bicubic, headcam with {trunk.pos_interp.upper()}'s resampling (features "
                "differ there)." if timm.model_args else ""), ""]
    out += ["With headcam: `headcam-eval linear --model local-dir:OUT ...` (or `hf-hub:ORG/NAME` once uploaded) "
            "rebuilds the trunk headcam evaluates.", "",
            "Preprocessing (`pretrained_cfg`): resize the short side to "
            f"{size} / {pcfg['crop_pct']} px ({pcfg['interpolation']}), centre-crop {size} px, normalise with "
            f"mean {pcfg['mean']} and std {pcfg['std']}.", ""]
    if reports:
        out += ["## Evaluation", "", *results_markdown(reports)]
    out += ["## Provenance", "", f"- source file: `{o['file']}` (sha256 `{o['sha256']}`), format {o['format']}"]
    if o.get("config"):
        out += ["", "## Training config (resolved)", "", "```yaml",
                yaml.safe_dump(o["config"], sort_keys=False).rstrip(), "```"]
    return "\n".join(out) + "\n"


def export(trunk: Trunk, out: Path, reports: list[dict[str, Any]] = (), name: str | None = None) -> dict[str, Any]:
    """Write ``trunk`` into ``out`` (module docstring); returns the config.json written."""
    from safetensors.torch import save as safetensors_bytes

    from headcam.shards.atomic import atomic_write_bytes, prepare_out_dir

    net, dim = built(trunk)
    prepare_out_dir(out)
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    tensors = to_timm_names(trunk.arch, state)
    config = config_json(trunk, dim, _input_size(trunk))
    atomic_write_bytes(out / WEIGHTS, safetensors_bytes(tensors, metadata={"format": "pt"}))
    atomic_write_bytes(out / CONFIG, (json.dumps(config, indent=2) + "\n").encode())
    atomic_write_bytes(out / CARD, card(trunk, dim, config, list(reports), name or out.resolve().name).encode())
    return config


@dataclass
class Exported:
    """A timm-layout folder read back: its config.json, its weights, and the ``headcam`` section (None for a
    folder headcam did not write); the weights are under headcam's names where that section is present."""

    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    headcam: dict[str, Any] | None
    weights: Path


def read_export(directory: Path, origin: str) -> Exported:
    """``directory``'s config.json and model.safetensors, or a one-line UsageError naming ``origin``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg_path, weights = directory / CONFIG, directory / WEIGHTS
    for p in (cfg_path, weights):
        if not p.is_file():
            raise UsageError(f"{origin}: no {p.name} (a timm-layout folder has config.json and model.safetensors)")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        state = load_file(weights, device="cpu")
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError, OSError) as e:
        raise UsageError(f"{origin}: cannot read {directory.name or directory}: {e}") from None
    config = config if isinstance(config, dict) else {}
    ours = config.get("headcam") if isinstance(config.get("headcam"), dict) else None
    # headcam's arch where headcam wrote the folder, else the one whose timm name the folder gives
    arch = ours.get("arch", "") if ours else next((a for a, t in TIMM_CNNS.items() if t == config.get("architecture")),
                                                 "")
    return Exported(config, from_timm_names(arch, state), ours, weights)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export a trunk in timm's pretrained layout: OUT/model.safetensors (the trunk alone, timm's\n"
                    "names), OUT/config.json (timm architecture, num_features, pretrained_cfg: input size, mean,\n"
                    "std, interpolation, crop_pct) and OUT/README.md (the model card).",
        epilog="timm.create_model('local-dir:OUT', pretrained=True, num_classes=0) then gives headcam's features\n"
               "(resnet18/50, resnext50_32x4d, mobilenet_v2, ViTs). A small-stem ResNet has no timm equivalent:\n"
               "its card shows the three torchvision lines that load it. In headcam: headcam-eval --model\n"
               "local-dir:OUT (or hf-hub:ORG/NAME once uploaded).\n\n"
               "example: headcam-export runs/dino/checkpoint.pt export/dino_vits16 --report reports/dino")
    p.add_argument("checkpoint", type=Path,
                   help="a headcam-train checkpoint (RUN/checkpoint.pt) or a published one (baby-vision, "
                        "silicon-menagerie DINO / MAE .pth), read with safe loading only")
    p.add_argument("out", type=Path, help="output folder (created; its three files are replaced)")
    p.add_argument("--report", action="append", type=Path, default=[], metavar="DIR",
                   help="a headcam-eval report directory whose results go into the card; repeat for several")
    p.add_argument("--name", help="the model's title in the card (default: the OUT folder's name)")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not args.checkpoint.is_file():
        what = "a directory" if args.checkpoint.is_dir() else "not found"
        raise UsageError(f"{args.checkpoint}: {what}; give a checkpoint file (e.g. RUN/checkpoint.pt)")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"{args.out}: exists and is not a folder")
    reports = read_reports(args.report)
    trunk = read_trunk(args.checkpoint)
    config = export(trunk, args.out, reports, args.name)
    target = config["architecture"] if timm_arch(trunk.arch, trunk.small_stem) else "no timm equivalent"
    print(f"exported {trunk.arch} ({config['num_features']} features, {trunk.origin['format']}) to {args.out}: "
          f"{WEIGHTS}, {CONFIG}, {CARD}; timm: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
