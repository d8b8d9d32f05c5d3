"""Post-hoc analyses of a frozen trunk (SPEC §9, as in baby-vision).

- Class selectivity index per unit: CSI = (mu_max - mu_rest) / (mu_max + mu_rest), where mu_max is
  the unit's largest class-mean activation and mu_rest the mean of its other class means
  (pooled features of the held-out samples). Histogram PNG.
- Top-activating images per unit: for the most selective units, the held-out images that drive
  them hardest (grid PNG, one row per unit).
- Class attention maps (CNNs): the readout's weights for the predicted class times the last feature
  maps, summed over channels, upsampled to the image and overlaid (PNGs).
- Self-attention (ViTs, ``attention=True``): DINO's last-block CLS attention per head, the mean over
  heads and their thresholded masks, one grid PNG per image (:mod:`headcam.eval.attention`); a
  spatiotemporal ViT's per tubelet of held-out clips, averaged over heads (mae_st's ``visualize_attn.py``).

Everything lands in one folder with analysis.json and a report.md that shows every PNG.

The readout is an exact logistic regression fitted on the training side of the protocol; its
weights are mapped back to raw feature units so they apply to the un-standardised feature maps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from headcam.console import UsageError
from headcam.eval.attention import (
    AttentionMaps,
    attention_grid,
    clip_attention_md,
    cls_attention_maps,
    video_vit_of,
    vit_of,
    write_clip_attention,
)
from headcam.eval.baselines import unnormalise
from headcam.eval.decode import DecodeOptions, source_features
from headcam.eval.features import prepare_trunk
from headcam.eval.models import EvalModel
from headcam.eval.probes import run_probe
from headcam.eval.protocols import Plan
from headcam.eval.report import pyplot
from headcam.shards.atomic import atomic_write_bytes

THUMB = 96


def class_selectivity(feats: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """CSI of every unit (column) of ``feats``; classes without samples are left out; 0 where undefined."""
    present = [c for c in range(n_classes) if np.any(labels == c)]
    if len(present) < 2:
        raise ValueError("class selectivity needs samples of at least 2 classes")
    means = np.stack([feats[labels == c].mean(axis=0) for c in present])  # C x D
    mu_max = means.max(axis=0)
    mu_rest = (means.sum(axis=0) - mu_max) / (len(present) - 1)
    denom = mu_max + mu_rest
    with np.errstate(divide="ignore", invalid="ignore"):
        csi = np.where(np.abs(denom) > 1e-12, (mu_max - mu_rest) / denom, 0.0)
    return csi.astype(np.float64)


POOLS = (torch.nn.AdaptiveAvgPool2d, torch.nn.AvgPool2d, torch.nn.AdaptiveMaxPool2d, torch.nn.MaxPool2d)


class FeatureMaps:
    """Captures the last 4-D output among a trunk's top-level children that is not a pooling layer:
    the last feature maps before global pooling (``layer4`` of a ResNet, ``features`` of MobileNetV2)."""

    def __init__(self, trunk: torch.nn.Module):
        self.maps: torch.Tensor | None = None
        self._hooks = [m.register_forward_hook(self._keep) for m in trunk.children() if not isinstance(m, POOLS)]

    def _keep(self, _module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            self.maps = output

    def close(self) -> None:
        for h in self._hooks:
            h.remove()


def attention_map(maps: torch.Tensor, weight: np.ndarray) -> np.ndarray:
    """sum_k w_k A_k(y, x) for one image's maps (K x h x w) and one class's readout row (K)."""
    w = torch.from_numpy(weight.astype(np.float32)).view(-1, 1, 1)
    return (maps.float().cpu() * w).sum(0).numpy()


def _overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """RGB uint8 image with the (upsampled, min-max scaled) map blended in as a jet heat map."""
    plt = pyplot()
    h, w = image.shape[:2]
    up = torch.nn.functional.interpolate(torch.from_numpy(cam)[None, None], size=(h, w), mode="bilinear",
                                         align_corners=False)[0, 0].numpy()
    up = (up - up.min()) / max(float(up.max() - up.min()), 1e-12)
    heat = plt.get_cmap("jet")(up)[..., :3]
    return (255 * (0.5 * image / 255.0 + 0.5 * heat)).clip(0, 255).astype(np.uint8)


def _rgb(images: torch.Tensor) -> list[np.ndarray]:
    """B x 3 x H x W images in [0, 1] as H x W x 3 uint8 RGB arrays."""
    return [(x.permute(1, 2, 0).numpy() * 255).astype(np.uint8) for x in images]


@dataclass
class Collected:
    """What one pass over the held-out images keeps: ``thumbs`` (THUMB px), a CNN's last feature ``maps``,
    and a ViT's self-attention ``attention`` with its image at the model's side."""

    thumbs: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    attention: dict[str, tuple[np.ndarray, AttentionMaps]] = field(default_factory=dict)


def _collect(model: EvalModel, plan: Plan, opts: DecodeOptions, wanted: set[str], maps_for: set[str],
             threshold: float | None = None) -> Collected:
    """One pass over the held-out splits: thumbnails of ``wanted`` keys and, for ``maps_for`` keys, a CNN's
    feature maps or (``threshold`` given) a ViT's self-attention maps."""
    from headcam.pipelines.loader import LoaderConfig, build_loader

    trunk = prepare_trunk(model.trunk, opts.device)
    vit = vit_of(trunk)
    hook = FeatureMaps(trunk) if vit is None and video_vit_of(trunk) is None else None
    got = Collected()
    try:
        for split in plan.test.splits:
            cfg = LoaderConfig.for_eval(size=opts.size, batch_size=opts.batch_size, device=opts.device,
                                        workers=opts.workers)
            loader = build_loader(plan.test.dataset, split, cfg)
            for batch in loader:
                rows = [i for i, k in enumerate(batch.keys) if k in wanted or k in maps_for]
                if not rows:
                    continue
                views = batch.views[0][rows]
                keys = [batch.keys[i] for i in rows]
                thumbs = torch.nn.functional.interpolate(unnormalise(views), size=THUMB, mode="area")
                got.thumbs.update(zip(keys, _rgb(thumbs), strict=True))
                mapped = [j for j, k in enumerate(keys) if k in maps_for]
                if hook is not None:
                    with torch.inference_mode():
                        trunk(views.to(opts.device))
                    got.maps.update((keys[j], hook.maps[j].float().cpu()) for j in mapped)
                elif threshold is not None and mapped:
                    picked = views[mapped]
                    found = cls_attention_maps(vit, picked.to(opts.device), threshold)
                    for j, image, maps in zip(mapped, _rgb(unnormalise(picked)), found, strict=True):
                        got.attention[keys[j]] = (image, maps)
    finally:
        if hook is not None:
            hook.close()
    return got


def _grid(rows: list[list[np.ndarray]], titles: list[str], path: Path) -> None:
    plt = pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols + 1, 1.3 * n_rows), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(row):
                ax.imshow(row[c])
        axes[r][0].set_title(titles[r], fontsize=6, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _histogram(csi: np.ndarray, path: Path, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(csi, bins=40, range=(min(0.0, float(csi.min())), 1.0))
    ax.set_xlabel("class selectivity index")
    ax.set_ylabel("units")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _class_attention(model: EvalModel, plan: Plan, readout, test, got: Collected, keys: list[str],
                     out: Path) -> list[str]:
    """A CNN's class attention maps of ``keys`` (attention/KEY.png and the attention_maps.png grid); the PNGs."""
    from PIL import Image

    pred = readout.scores.argmax(axis=1)
    index = {k: i for i, k in enumerate(test.keys.tolist())}
    overlays, titles, shown = [], [], []
    for k in keys:
        if k not in got.maps or k not in got.thumbs:
            continue
        i = index[k]
        (out / "attention").mkdir(exist_ok=True)
        overlay = _overlay(got.thumbs[k], attention_map(got.maps[k], readout.weight[pred[i]]))
        Image.fromarray(overlay).save(out / "attention" / f"{k}.png")
        overlays.append(overlay)
        shown.append(k)
        titles.append(f"{k}: {plan.class_names[test.labels[i]]} -> {plan.class_names[pred[i]]}")
    if overlays:
        _grid([[got.thumbs[k], o] for k, o in zip(shown, overlays, strict=True)], titles,
              out / "attention_maps.png")
    return [f"attention/{k}.png" for k in shown]


def _self_attention(model: EvalModel, plan: Plan, test, got: Collected, keys: list[str], threshold: float,
                    out: Path) -> dict[str, Any]:
    """A ViT's DINO self-attention grid of each of ``keys`` (self_attention/KEY.png); what analysis.json keeps."""
    vit = vit_of(model.trunk)
    patch = vit.patch_embed.patch_size[0]
    (out / "self_attention").mkdir(exist_ok=True)
    labels = dict(zip(test.keys.tolist(), test.labels.tolist(), strict=True))
    grids, grid = {}, []
    for k in keys:
        if k in got.attention:
            image, maps = got.attention[k]
            grids[k], grid = f"self_attention/{k}.png", list(maps.mean.shape)
            attention_grid(image, maps, patch, threshold, f"{model.name} · {k} ({plan.class_names[labels[k]]})",
                           out / grids[k])
    return {"threshold": threshold, "patch": patch, "heads": vit.blocks[-1].attn.num_heads, "grid": grid,
            "classes": {k: plan.class_names[labels[k]] for k in grids}, "grids": list(grids.values())}


def _report_md(summary: dict[str, Any], units: int, per_unit: int) -> str:
    """report.md of an analysis: its numbers and every PNG it wrote, in the order they were made."""
    lines = [f"# Analysis of {summary['model']}", "",
             f"Protocol {summary['protocol']}: {summary['n_units']} units, class selectivity index mean "
             f"{summary['csi_mean']:.3f} (median {summary['csi_median']:.3f}); exact logistic-regression readout "
             f"top-1 {summary['readout_top1']:.1f} %.", "",
             "## Class selectivity", "", "![class selectivity index per unit](csi_hist.png)", "",
             "## Top-activating images", "",
             f"The {units} most selective units, each with its {per_unit} held-out images that drive it hardest "
             "(one row per unit).", "", "![top-activating images](top_units.png)", ""]
    if summary["attention_maps"]:
        lines += ["## Class attention maps", "",
                  "The readout's weights for the predicted class times the last feature maps, summed over channels "
                  "(true class -> predicted class).", "", "![class attention maps](attention_maps.png)", ""]
    sa = summary.get("self_attention")
    if sa and sa["grids"]:
        grid = "x".join(str(n) for n in sa["grid"])
        lines += ["## Self-attention (DINO)", "",
                  f"The last block's CLS attention to the {grid} patches ({sa['patch']} px), per head and averaged "
                  f"over the {sa['heads']} heads (top row); below, the smallest set of patches holding "
                  f"{sa['threshold']:.0%} of each map's mass (threshold {sa['threshold']}), as facebookresearch/dino "
                  "`visualize_attention.py` draws them, upsampled by the patch size (nearest).", ""]
        for path in sa["grids"]:
            key = Path(path).stem
            lines += [f"### {key} ({sa['classes'][key]})", "", f"![self-attention of {key}]({path})", ""]
    if summary.get("clip_attention"):
        lines += clip_attention_md(summary["clip_attention"])
    return "\n".join(lines)


def analyze(model: EvalModel, plan: Plan, opts: DecodeOptions, out: Path, *, units: int = 8, per_unit: int = 8,
            maps: int = 8, attention_threshold: float | None = None, clip_stride: int | None = None) -> str:
    """Write csi_hist.png, top_units.png, a CNN's attention_maps.png and attention/*.png, analysis.json and
    report.md into ``out``; ``maps`` test images get maps. With ``attention_threshold`` (DINO's: 0.6), a ViT's
    self-attention grids too (self_attention/*.png, masks holding that fraction of the mass); a spatiotemporal
    ViT's clip attention instead (clip_attention/*.png, clips ``clip_stride`` sampled frames apart)."""
    video = video_vit_of(model.trunk) is not None
    if attention_threshold is not None and vit_of(model.trunk) is None and not video:
        raise UsageError(f"--attention needs a ViT (DINO's last-block CLS attention per head); {model.name} is a "
                         f"{model.arch} CNN: drop --attention for its class attention maps")
    out.mkdir(parents=True, exist_ok=True)
    train = source_features(model, plan.train, opts)
    test = source_features(model, plan.test, opts)
    readout = run_probe("logreg", train.feats, train.labels, test.feats, test.labels, plan.n_classes, seed=opts.seed)
    csi = class_selectivity(test.feats, test.labels, plan.n_classes)
    _histogram(csi, out / "csi_hist.png", f"{model.name}: class selectivity of {len(csi)} units")

    chosen = np.argsort(-csi)[:units]
    top_keys = {int(u): [str(k) for k in test.keys[np.argsort(-test.feats[:, u])[:per_unit]]] for u in chosen}
    map_keys = [str(k) for k in test.keys[:maps]]
    wanted = {k for ks in top_keys.values() for k in ks} | set(map_keys)
    got = _collect(model, plan, opts, wanted, set(map_keys), None if video else attention_threshold)

    rows = [[got.thumbs[k] for k in top_keys[int(u)] if k in got.thumbs] for u in chosen]
    _grid(rows, [f"unit {int(u)} CSI {csi[u]:.2f}" for u in chosen], out / "top_units.png")

    summary: dict[str, Any] = {
        "model": model.name, "protocol": plan.protocol, "n_units": int(len(csi)),
        "csi_mean": float(csi.mean()), "csi_median": float(np.median(csi)),
        "readout_top1": round(readout.top1, 2),
        "top_units": {str(u): {"csi": float(csi[u]), "keys": ks} for u, ks in top_keys.items()},
        "attention_maps": _class_attention(model, plan, readout, test, got, map_keys, out),
    }
    done = f"{len(summary['attention_maps'])} class attention maps"
    if attention_threshold is not None and video:
        summary["clip_attention"] = write_clip_attention(model, plan, opts, out, maps, clip_stride)
        done = f"{len(summary['clip_attention']['grids'])} clip attention grids"
    elif attention_threshold is not None:
        summary["self_attention"] = _self_attention(model, plan, test, got, map_keys, attention_threshold, out)
        done = f"{len(summary['self_attention']['grids'])} self-attention grids (threshold {attention_threshold})"
    atomic_write_bytes(out / "analysis.json", (json.dumps(summary, indent=2) + "\n").encode())
    atomic_write_bytes(out / "report.md", (_report_md(summary, units, per_unit) + "\n").encode())
    return (f"{len(csi)} units, mean CSI {summary['csi_mean']:.3f}, readout top-1 {readout.top1:.1f}%, {done}")
