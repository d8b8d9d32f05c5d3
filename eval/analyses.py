"""Post-hoc analyses of a frozen trunk (SPEC §9, as in baby-vision).

- Class selectivity index per unit: CSI = (mu_max - mu_rest) / (mu_max + mu_rest), where mu_max is
  the unit's largest class-mean activation and mu_rest the mean of its other class means
  (pooled features of the held-out samples). Histogram PNG.
- Top-activating images per unit: for the most selective units, the held-out images that drive
  them hardest (grid PNG, one row per unit).
- Class attention maps: the readout's weights for the predicted class times the last feature
  maps, summed over channels, upsampled to the image and overlaid (PNGs).

The readout is an exact logistic regression fitted on the training side of the protocol; its
weights are mapped back to raw feature units so they apply to the un-standardised feature maps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def _collect(model: EvalModel, plan: Plan, opts: DecodeOptions, wanted: set[str], maps_for: set[str]):
    """One pass over the held-out splits: thumbnails of ``wanted`` keys, feature maps of ``maps_for`` keys."""
    from headcam.pipelines.loader import LoaderConfig, build_loader

    trunk = prepare_trunk(model.trunk, opts.device)
    hook = FeatureMaps(trunk)
    images: dict[str, np.ndarray] = {}
    maps: dict[str, torch.Tensor] = {}
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
                thumbs = torch.nn.functional.interpolate(unnormalise(views), size=THUMB, mode="area")
                with torch.inference_mode():
                    trunk(views.to(opts.device))
                for j, i in enumerate(rows):
                    key = batch.keys[i]
                    images[key] = (thumbs[j].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
                    if key in maps_for:
                        maps[key] = hook.maps[j].float().cpu()
    finally:
        hook.close()
    return images, maps


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


def analyze(model: EvalModel, plan: Plan, opts: DecodeOptions, out: Path, *, units: int = 8, per_unit: int = 8,
            maps: int = 8) -> str:
    """Write csi_hist.png, top_units.png, attention_maps.png, attention/*.png and analysis.json into ``out``."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    train = source_features(model, plan.train, opts)
    test = source_features(model, plan.test, opts)
    readout = run_probe("logreg", train.feats, train.labels, test.feats, test.labels, plan.n_classes, seed=opts.seed)
    csi = class_selectivity(test.feats, test.labels, plan.n_classes)
    _histogram(csi, out / "csi_hist.png", f"{model.name}: class selectivity of {len(csi)} units")

    chosen = np.argsort(-csi)[:units]
    top_keys = {int(u): [str(k) for k in test.keys[np.argsort(-test.feats[:, u])[:per_unit]]] for u in chosen}
    cam_keys = [str(k) for k in test.keys[:maps]]
    wanted = {k for ks in top_keys.values() for k in ks} | set(cam_keys)
    images, fmaps = _collect(model, plan, opts, wanted, set(cam_keys))

    rows = [[images[k] for k in top_keys[int(u)] if k in images] for u in chosen]
    _grid(rows, [f"unit {int(u)} CSI {csi[u]:.2f}" for u in chosen], out / "top_units.png")

    pred = readout.scores.argmax(axis=1)
    index = {k: i for i, k in enumerate(test.keys.tolist())}
    (out / "attention").mkdir(exist_ok=True)
    overlays, titles, shown = [], [], []
    for k in cam_keys:
        if k not in fmaps or k not in images:
            continue
        i = index[k]
        overlay = _overlay(images[k], attention_map(fmaps[k], readout.weight[pred[i]]))
        Image.fromarray(overlay).save(out / "attention" / f"{k}.png")
        overlays.append(overlay)
        shown.append(k)
        titles.append(f"{k}: {plan.class_names[test.labels[i]]} -> {plan.class_names[pred[i]]}")
    if overlays:
        _grid([[images[k], o] for k, o in zip(shown, overlays, strict=True)], titles, out / "attention_maps.png")

    summary: dict[str, Any] = {
        "model": model.name, "protocol": plan.protocol, "n_units": int(len(csi)),
        "csi_mean": float(csi.mean()), "csi_median": float(np.median(csi)),
        "readout_top1": round(readout.top1, 2),
        "top_units": {str(u): {"csi": float(csi[u]), "keys": ks} for u, ks in top_keys.items()},
        "attention_maps": [f"attention/{k}.png" for k in cam_keys if k in fmaps],
    }
    atomic_write_bytes(out / "analysis.json", (json.dumps(summary, indent=2) + "\n").encode())
    return (f"{len(csi)} units, mean CSI {summary['csi_mean']:.3f}, readout top-1 {readout.top1:.1f}%, "
            f"{len(overlays)} attention maps")
