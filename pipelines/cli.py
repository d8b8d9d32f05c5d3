"""``headcam-views``: a gallery of what the model sees, so a person can check a recipe by eye.

One row per sample: the original frame, its saliency map as the first view sees it (cropped and
flipped with the view) with the drawn fixation marked, then the augmented views. The rows take
turns over the sources (videos, images) and spread over time within each (:func:`gallery_keys`):
the split's first samples are one or two clips of near-identical frames.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from headcam.console import ArgumentParser, UsageError, progress, run_main
from headcam.pipelines.spec import recipe_names, resolve_spec
from headcam.shards.dataset import DatasetError, open_dataset


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="headcam-views", description=__doc__.split("\n\n")[0] + ".",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dataset", help="dataset written by headcam-ingest: a directory, or a URL or pipe: command as "
                                   "headcam-eval's --data (torch backend)")
    p.add_argument("--recipe", default="simclr",
                   help=f"augmentation recipe: {', '.join(recipe_names())}, or the path of a recipe YAML")
    p.add_argument("--n", type=int, default=16, help="number of samples (rows)")
    p.add_argument("--out", default="grid.png", help="output PNG")
    p.add_argument("--split", default="train", help="dataset split to read")
    p.add_argument("--backend", choices=("torch", "dali"), default="torch",
                   help="augmentation backend (dali: views only, CPU or GPU)")
    p.add_argument("--views", type=int, default=2, help="views per sample")
    p.add_argument("--size", type=int, default=224, help="view side in pixels")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="changes to the recipe's keys, as headcam-train's augment.KEY=VALUE: e.g. flip_p=0 blur.p=1")
    return p


def _to_image(view, spec) -> np.ndarray:
    """Normalised CHW tensor -> HWC float in [0, 1]."""
    mean = np.asarray(spec.mean).reshape(3, 1, 1)
    std = np.asarray(spec.std).reshape(3, 1, 1)
    return np.clip(view.cpu().numpy() * std + mean, 0, 1).transpose(1, 2, 0)


def gallery_keys(dataset, split: str, n: int) -> list[str]:
    """``n`` keys of ``split`` (fewer if it holds fewer), taking turns over the sources and spread evenly in time
    (frame order) within each; with more sources than rows (an image folder: one source per image), ``n``
    sources spread over the sorted list."""
    man = dataset.manifest.select(["key", "split", "source", "frame_index"]).to_pylist()
    by_source: dict[str, list[tuple[int, str]]] = {}
    for r in man:
        if r["split"] == split:
            by_source.setdefault(r["source"], []).append((r["frame_index"], r["key"]))
    groups = [sorted(frames) for _, frames in sorted(by_source.items())]
    if len(groups) > n:
        groups = [groups[i] for i in np.linspace(0, len(groups) - 1, n).round().astype(int)]
    counts = [0] * len(groups)
    while sum(counts) < n and any(c < len(g) for c, g in zip(counts, groups, strict=True)):
        for i, g in enumerate(groups):  # one more row each, in turn, while a source has frames left
            if counts[i] < len(g) and sum(counts) < n:
                counts[i] += 1
    picks = [[g[int((j + 0.5) * len(g) / c)][1] for j in range(c)] for g, c in zip(groups, counts, strict=True)]
    return [p[j] for j in range(max(counts, default=0)) for p in picks if j < len(p)]


def _caption(sample) -> str:
    """``video.mp4 12.4 s`` from the sample's metadata (the shard contract's KEY.json), else its key."""
    source, pts = sample.meta.get("source"), sample.meta.get("pts")
    if not source:
        return sample.key
    return Path(source).name + (f" {pts:.1f} s" if isinstance(pts, (int, float)) and pts == pts else "")


def _torch_rows(dataset, split: str, spec, n: int, views: int, size: int, seed: int) -> list[list]:
    """[(original HWC, saliency map or None, fixation or None, [view HWC...])] for :func:`gallery_keys`."""
    import torch

    from headcam.pipelines.loader import decode_image, decode_saliency
    from headcam.pipelines.torch.views import ViewMaker
    from headcam.shards.read import read_samples, select

    keys = gallery_keys(dataset, split, n)
    found = {}
    for s in read_samples(select(dataset, split, keys)):
        image = decode_image(s.jpg)
        if image is not None:
            found[s.key] = (image, decode_saliency(s.sal), _caption(s))
    samples = [found[k][:2] for k in keys if k in found]  # in gallery order, not shard order
    captions = [found[k][2] for k in keys if k in found]
    if not samples:
        raise UsageError(f"no readable samples in split '{split}'")
    maker = ViewMaker(spec, size=size, n_views=views)
    prepared = maker.prepare([s[0] for s in samples], [s[1] for s in samples], np.random.default_rng(seed))
    finished = [maker.finish(v) for v in prepared]
    rows = []
    for i, (image, sal) in enumerate(samples):
        view_sal = prepared[0].saliency[i] if prepared[0].saliency is not None else sal
        fix = finished[0][1][i].tolist() if finished[0][1].shape[1] else None
        if fix is not None and prepared[0].saliency is None:
            view_sal = torch.zeros(size, size) if sal is None else None
        rows.append([image.permute(1, 2, 0).numpy(), None if view_sal is None else view_sal.numpy(), fix,
                     [_to_image(f[0][i], spec) for f in finished], captions[i]])
    return rows


def _dali_rows(dataset, split: str, spec, n: int, views: int, size: int, seed: int) -> list[list]:
    from headcam.pipelines.loader import LoaderConfig, build_loader

    loader = build_loader(dataset, split, LoaderConfig(spec, batch_size=n, n_views=views, size=size, backend="dali",
                                                       seed=seed, train=False))
    batch = next(iter(loader))
    return [[None, None, None, [_to_image(v[i], spec) for v in batch.views], None]
            for i in range(batch.label.shape[0])]


def draw_gallery(rows: list[list], out: Path, title: str) -> None:
    """Write :func:`gallery_figure` of ``rows`` to ``out`` as a PNG."""
    import matplotlib.pyplot as plt

    fig = gallery_figure(rows, title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def gallery_figure(rows: list[list], title: str):
    """One row per sample (original captioned with its source and time, saliency on a fixed 0-1 scale with the
    fixation, then the views); the saliency column has a colour scale, so maps of different rows compare."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lead = 0 if all(row[0] is None for row in rows) else 2  # DALI rows: views only
    cols = lead + len(rows[0][3])
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 1.6 * len(rows) + 0.8), squeeze=False,
                             layout="constrained")
    sal_image = None
    for r, (orig, sal, fix, views, caption) in enumerate(progress(rows, "drawing", unit="row")):
        panels = ([orig, sal] if lead else []) + views
        for c, img in enumerate(panels):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if img is not None and lead and c == 1:
                sal_image = ax.imshow(img, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
            elif img is not None:
                ax.imshow(img, interpolation="nearest")
            if lead and c == 1 and fix is not None and img is not None:
                ax.plot([fix[1]], [fix[0]], marker="+", color="cyan", markersize=10, mew=2)
            if r == 0:
                ax.set_title(["original", "saliency + fixation"][c] if c < lead else f"view {c - lead + 1}",
                             fontsize=8)
        if lead and caption:
            axes[r][0].set_xlabel(caption, fontsize=7)
    if sal_image is not None:
        fig.colorbar(sal_image, ax=axes[:, 1], location="bottom", aspect=10, pad=0.01,
                     label="saliency (stored map, 1 = the frame's peak)")
    fig.suptitle(title, fontsize=9)
    return fig


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.n < 1 or args.views < 1 or args.size < 8:
        raise UsageError("--n and --views must be >= 1 and --size >= 8")
    spec = resolve_spec(args.recipe, args.overrides)
    try:
        dataset = open_dataset(args.dataset)
        dataset.shards(args.split)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    make = _torch_rows if args.backend == "torch" else _dali_rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rows = make(dataset, args.split, spec, args.n, args.views, args.size, args.seed)
    out = Path(args.out)
    draw_gallery(rows, out, f"{args.dataset} [{args.split}] recipe {spec.recipe}, {args.backend} backend")
    print(f"wrote {out}: {len(rows)} samples x {args.views} views (recipe {spec.recipe}, {args.backend})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("headcam-views", _main, argv)
