"""Augmentation benchmark: our backends against the usual way, images per second, ratios from one run.

(a) Two-view SimCLR views from shards on CPU, at each ``--size``: the torch backend
    (``build_loader``) and headcam's DALI on CPU (``backend="dali"``, ``device_id=None``) against
    torchvision v2 transforms applied per image in a DataLoader over the same shards with the same
    worker count (goal: torch >= 1.5x, DALI >= 1.8x), and headcam's DALI against a bare hand-written
    DALI pipeline of the same ops (goal: >= 0.95x: headcam adds no overhead to DALI), and headcam's DALI
    with ``jitter.order=fixed`` against the pipeline a user writes (solo-learn's DALI loader: one fused
    ``color_twist``, reading only ``.jpg``; goal: >= 0.95x).
    Also DINO's multi-crop (2 × 224 px + 8 × 96 px, per-view blur and solarisation), ours (torch, DALI
    on CPU) against the same views made by torchvision v2 per image.
(b) Foveation + cortical magnification on a batch: our batched ops against a per-image implementation
    in the style of the original (a Python loop over every ring of every image, a 2-D blur per ring,
    one grid per image). Goal: >= 3x on CPU, >= 10x on GPU (run on GPU too when CUDA is present).

The bench dataset is written as shards from real frames of the shared media (``../shared/data/media``).

    .venv/bin/python bench/augment.py [--short] [--json PATH] [--workers N] [--size PX [PX ...]]
                                      [--shard-side PX] [--views-only]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "data" / "media"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as every recipe
JITTER_ORDERS = np.array(list(itertools.permutations(range(4))), dtype=np.int32)  # ColorJitter's random order


# ---------------------------------------------------------------- bench dataset


def make_dataset(out: Path, n: int, side: int) -> Path:
    """``n`` real frames (short side ``side``) from the shared media, written as 4+ train shards."""
    import av
    from PIL import Image

    from headcam.shards.dataset import manifest_table, write_json, write_table
    from headcam.shards.schema import DATASET_JSON, MANIFEST, SCHEMA_VERSION
    from headcam.shards.writer import Sample, ShardWriter

    frames = []
    videos = sorted(MEDIA.iterdir())
    per_video = math.ceil(n / len(videos))
    for vi, path in enumerate(videos):
        with av.open(str(path)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                if i >= per_video:
                    break
                img = frame.to_image()
                s = side / min(img.size)
                frames.append((vi, img.resize((round(img.width * s), round(img.height * s)), Image.BILINEAR)))
    frames = (frames * math.ceil(n / len(frames)))[:n]
    writer = ShardWriter(out, "train", max_count=max(1, n // 8))
    rows = []
    for i, (vi, img) in enumerate(frames):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        key = f"b{i:06d}"
        writer.write(Sample(key=key, jpg=buf.getvalue(), label=vi, meta={"clip": i // 8}))
        rows.append(dict(key=key, split="train", shard="", label=vi, source=str(videos[vi]), stream="",
                         video_index=vi, frame_index=i, pts=float("nan"), stream_time=float("nan"), clip=i // 8,
                         width=img.width, height=img.height, has_saliency=False))
    writer.close()
    shard_of = dict(writer.written)
    for r in rows:
        r["shard"] = shard_of[r["key"]]
    write_table(out / MANIFEST, manifest_table(rows))
    write_json(out / DATASET_JSON, {"schema_version": SCHEMA_VERSION, "kind": "images",
                                    "classes": {"names": [v.stem for v in videos], "n_classes": len(videos)}})
    return out


# ---------------------------------------------------------------- (a) two-view SimCLR from shards


class TorchvisionViews(torch.utils.data.IterableDataset):
    """The usual way: webdataset samples, PIL decode, a torchvision v2 Compose per image and view (default: the
    SimCLR one, twice)."""

    def __init__(self, shards: list[str], size: int, views: list | None = None):
        from torchvision.transforms import v2

        self.shards = shards
        k = max(1, int(0.1 * size)) | 1
        simclr = v2.Compose([
            v2.ToImage(), v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True), v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8), v2.RandomGrayscale(0.2),
            v2.RandomApply([v2.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(MEAN), list(STD))])
        self.views = views or [simclr, simclr]

    def __iter__(self):
        import webdataset as wds
        from PIL import Image

        torch.set_num_threads(1)
        info = torch.utils.data.get_worker_info()
        mine = self.shards[info.id::info.num_workers] if info else self.shards
        for raw in wds.DataPipeline(wds.SimpleShardList(mine), wds.tarfile_to_samples()):
            img = Image.open(io.BytesIO(raw["jpg"])).convert("RGB")
            yield *[t(img) for t in self.views], int(raw["cls"])


def dino_transform(size: int, scale: tuple[float, float], blur_p: float, solarize_p: float):
    """One of DINO's torchvision view transforms (facebookresearch/dino's DataAugmentationDINO, in v2 ops)."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.ToImage(), v2.RandomResizedCrop(size, scale=scale, antialias=True), v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), v2.RandomGrayscale(0.2),
        v2.RandomApply([v2.GaussianBlur(max(1, int(0.1 * size)) | 1, sigma=(0.1, 2.0))], p=blur_p),
        v2.RandomSolarize(128, p=solarize_p), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(MEAN), list(STD))])


def dino_views(size: int) -> list:
    """DINO's multi-crop the usual way: 2 global crops at ``size`` (blur 1.0 / 0.1, solarise 0 / 0.2) and 8 local
    crops at 96/224 of it (blur 0.5)."""
    local = round(size * 96 / 224)
    return [dino_transform(size, (0.4, 1.0), 1.0, 0.0), dino_transform(size, (0.4, 1.0), 0.1, 0.2),
            *[dino_transform(local, (0.05, 0.4), 0.5, 0.0)] * 8]


def images_per_second(batches, batch_size_of) -> float:
    """Samples/s over an iterable of batches, timed from the first batch on (worker start-up excluded)."""
    n, start = 0, None
    for b in batches:
        if start is None:
            start = time.perf_counter()
            continue
        n += batch_size_of(b)
    return n / (time.perf_counter() - start) if n else float("nan")


def bare_dali_epoch(shards: list[str], size: int, batch: int, threads: int, seed: int, fused: bool = False) -> float:
    """The yardstick for headcam's DALI overhead: the same two-view SimCLR ops hand-written in DALI with no
    headcam code (decode once, ``random_resized_crop`` per view, jitter, grayscale and blur (kernel cut to
    ±4σ, as headcam's) behind conditionals, ``crop_mirror_normalize``), read with DALI's own
    ``DALIGenericIterator`` from the same shards with the same threads.

    ``fused=False``: the jitter as headcam's ``jitter.order=random`` (four ops in a random order per sample,
    contrast around the mean grey as torchvision), reading ``.jpg`` and ``.lbl``. ``fused=True``: what a user
    writes (solo-learn's DALI loader): one ``fn.color_twist`` in its fixed order, reading only ``.jpg``; the
    yardstick for ``jitter.order=fixed``."""
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali import math as dmath
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    k = max(1, int(0.1 * size)) | 1
    ext, dtypes = (["jpg"], [types.UINT8]) if fused else (["jpg", "lbl"], [types.UINT8, types.INT64])

    def coin(p: float):
        return fn.random.coin_flip(probability=p, dtype=types.BOOL)

    def jitter(v):
        if fused:
            return fn.color_twist(v, brightness=fn.random.uniform(range=[0.2, 1.8]),
                                  contrast=fn.random.uniform(range=[0.2, 1.8]),
                                  saturation=fn.random.uniform(range=[0.2, 1.8]),
                                  hue=fn.random.uniform(range=[-72, 72]))
        order = types.Constant(JITTER_ORDERS)[fn.random.choice(len(JITTER_ORDERS))]
        for step in range(4):
            op = order[step]
            if op == 0:
                v = fn.brightness(v, brightness=fn.random.uniform(range=[0.2, 1.8]))
            elif op == 1:
                m = fn.reductions.mean(v, axes=[0, 1], dtype=types.FLOAT)
                v = fn.contrast(v, contrast=fn.random.uniform(range=[0.2, 1.8]),
                                contrast_center=m[0] * 0.2989 + m[1] * 0.587 + m[2] * 0.114)
            elif op == 2:
                v = fn.hsv(v, saturation=fn.random.uniform(range=[0.2, 1.8]))
            else:
                v = fn.hsv(v, hue=fn.random.uniform(range=[-72, 72]))
        return v

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=None, seed=seed, enable_conditionals=True,
                  prefetch_queue_depth=2)
    def simclr():
        read = fn.readers.webdataset(paths=shards, index_paths=[p[:-4] + ".idx" for p in shards], ext=ext,
                                     dtypes=dtypes, random_shuffle=True, initial_fill=64, name="Reader")
        jpegs, labels = (read, []) if fused else (read[0], read[1:])  # one member: one DataNode, not a list
        images = fn.decoders.image(jpegs, output_type=types.RGB)
        views = []
        for _ in range(2):
            v = fn.random_resized_crop(images, size=[size, size], random_area=[0.08, 1.0],
                                       random_aspect_ratio=[3 / 4, 4 / 3])
            if coin(0.8):
                v = jitter(v)
            if coin(0.2):
                v = fn.hsv(v, saturation=0.0)
            if coin(0.5):  # the kernel cut to ±4σ, as headcam's (see maths.blur_kernel_sizes)
                sigma = fn.random.uniform(range=[0.1, 2.0])
                window = fn.cast(dmath.min(2.0 * dmath.ceil(4.0 * sigma) + 1.0, float(k)), dtype=types.INT32)
                v = fn.gaussian_blur(v, window_size=window, sigma=sigma)
            views.append(fn.crop_mirror_normalize(v, mirror=fn.random.coin_flip(), dtype=types.FLOAT,
                                                  output_layout="CHW", mean=[m * 255 for m in MEAN],
                                                  std=[s * 255 for s in STD]))
        return (*views, *labels)

    pipe = simclr()
    pipe.build()
    it = DALIGenericIterator([pipe], ["view0", "view1", *([] if fused else ["label"])], reader_name="Reader",
                             last_batch_policy=LastBatchPolicy.DROP, auto_reset=False)
    return images_per_second(it, lambda b: b[0]["view0"].shape[0])


def bench_views(data: Path, size: int, workers: int, batch: int, rounds: int, recipe: str = "simclr",
                fixed_recipe: str | None = None) -> dict:
    """Each method runs ``rounds`` epochs, interleaved (A B C A B C ...), and keeps its best epoch: a
    shared machine's load then hits every method alike instead of whichever happened to run last.
    ``recipe="dino"``: DINO's multi-crop (2 global + 8 local views) against torchvision's, no bare DALI row.
    ``fixed_recipe`` (a recipe YAML: simclr with ``jitter.order: fixed``): also headcam's DALI with the fused
    colour twist against the fused hand-written pipeline (``bare_dali_epoch(fused=True)``)."""
    from headcam.pipelines.loader import LoaderConfig, build_loader
    from headcam.pipelines.spec import recipe_spec
    from headcam.shards.dataset import open_dataset

    ds = open_dataset(data)
    out: dict = {"recipe": recipe, "size": size, "workers": workers, "batch": batch, "samples": ds.count("train"),
                 "rounds": rounds}
    shards = [str(p) for p in ds.shards("train")]
    tv = TorchvisionViews(shards, size, dino_views(size) if recipe == "dino" else None)

    def torchvision_epoch() -> float:
        loader = torch.utils.data.DataLoader(tv, batch_size=batch, num_workers=workers, drop_last=True)
        return images_per_second(loader, lambda b: b[0].shape[0])

    def ours(backend: str, recipe: str = recipe):
        loader = build_loader(ds, "train", LoaderConfig(recipe_spec(recipe), batch_size=batch, n_views=2, size=size,
                                                        backend=backend, workers=workers, shuffle_buffer=64))

        def epoch(e: int) -> float:
            loader.set_epoch(e)
            return images_per_second(loader, lambda b: b.views[0].shape[0])
        return epoch

    methods = {"torchvision_v2_img_s": lambda e: torchvision_epoch(), "torch_backend_img_s": ours("torch")}
    try:
        methods["dali_cpu_img_s"] = ours("dali")
        if recipe == "simclr":
            methods["bare_dali_cpu_img_s"] = lambda e: bare_dali_epoch(shards, size, batch, workers, e)
        if fixed_recipe:
            methods["dali_cpu_fixed_img_s"] = ours("dali", fixed_recipe)
            methods["fused_dali_cpu_img_s"] = lambda e: bare_dali_epoch(shards, size, batch, workers, e, fused=True)
    except Exception as e:  # DALI missing or failing must not hide the other figures
        out["dali_cpu_error"] = repr(e)
    best = {name: 0.0 for name in methods}
    for r in range(rounds):
        for name, run in methods.items():
            best[name] = max(best[name], run(r))
    out.update(best)
    out["ratio_torch_vs_torchvision"] = best["torch_backend_img_s"] / best["torchvision_v2_img_s"]
    if "dali_cpu_img_s" in best:
        out["ratio_dali_cpu_vs_torchvision"] = best["dali_cpu_img_s"] / best["torchvision_v2_img_s"]
    if "bare_dali_cpu_img_s" in best:
        out["ratio_dali_cpu_vs_bare_dali"] = best["dali_cpu_img_s"] / best["bare_dali_cpu_img_s"]
    if "fused_dali_cpu_img_s" in best:
        out["ratio_dali_cpu_fixed_vs_fused_dali"] = best["dali_cpu_fixed_img_s"] / best["fused_dali_cpu_img_s"]
    return out


def bench_views_in_process(data: Path, size: int, rounds: int) -> dict:
    """The same two-view SimCLR work without DataLoader workers: decode + augment 64 shard samples in
    one thread, ours batched vs torchvision v2 per image. Less sensitive to a shared machine's load."""
    import webdataset as wds
    from PIL import Image

    from headcam.pipelines.loader import decode_image
    from headcam.pipelines.spec import recipe_spec
    from headcam.pipelines.torch.views import ViewMaker
    from headcam.shards.dataset import open_dataset

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    shards = [str(p) for p in open_dataset(data).shards("train")]
    jpegs = [r["jpg"] for r, _ in zip(wds.DataPipeline(wds.SimpleShardList(shards), wds.tarfile_to_samples()),
                                      range(64), strict=False)]
    maker, tv = ViewMaker(recipe_spec("simclr"), size, 2), TorchvisionViews([], size)

    def ours():
        images = [decode_image(j) for j in jpegs]
        maker(images, [None] * len(images), np.random.default_rng(0))

    def theirs():
        for j in jpegs:
            img = Image.open(io.BytesIO(j)).convert("RGB")
            [t(img) for t in tv.views]

    best = {"torch_backend_img_s": 0.0, "torchvision_v2_img_s": 0.0}
    for _ in range(rounds):
        for name, fn in (("torch_backend_img_s", ours), ("torchvision_v2_img_s", theirs)):
            start = time.perf_counter()
            fn()
            best[name] = max(best[name], len(jpegs) / (time.perf_counter() - start))
    torch.set_num_threads(threads)
    return {"size": size, "threads": 1, **best,
            "ratio_torch_vs_torchvision": best["torch_backend_img_s"] / best["torchvision_v2_img_s"]}


# ---------------------------------------------------------------- (b) foveation + magnification


def per_image_foveate(img: torch.Tensor, fix: tuple[int, int], area: float, s: float = 0.2) -> torch.Tensor:
    """The original's way: per image, every ring (the last one too), a 2-D Gaussian blur per ring."""
    import torchvision.transforms.functional as TF

    _, h, w = img.shape
    d = 20 / math.sqrt(h * h + w * w)
    e0 = math.sqrt(h * w * area / math.pi) * d
    rows, cols = torch.meshgrid(torch.arange(h, dtype=img.dtype), torch.arange(w, dtype=img.dtype), indexing="ij")
    log_e = torch.log((torch.sqrt((rows - fix[0]) ** 2 + (cols - fix[1]) ** 2) * d).clamp_min(1e-6 * d))
    e_max = d * max(math.hypot(r - fix[0], c - fix[1]) for r in (0, h - 1) for c in (0, w - 1))
    n_rings = max(1, math.ceil((math.log(e_max) - math.log(e0)) / s + 1))

    def g(x):
        out = torch.zeros_like(x)
        out = torch.where((x > -0.75) & (x <= -0.25), torch.cos(math.pi * (x + 0.25)) ** 2, out)
        out = torch.where(x.abs() < 0.25, torch.ones_like(x), out)
        return torch.where((x >= 0.25) & (x <= 0.75), 1 - torch.cos(math.pi * (x - 0.75)) ** 2, out)

    out = g(((log_e - math.log(e0)) / s).clamp(0, 1)) * img
    for n in range(n_rings):
        sigma = 0.06 * e0 * math.exp((n + 1) * s) / d
        k = int(3 * sigma)
        k += 1 - k % 2
        blurred = TF.gaussian_blur(img, [k, k], [sigma, sigma]) if k > 1 else img
        out = out + g((log_e - math.log(e0) - (n + 1) * s) / s) * blurred
    return out.clamp(0, 1)


def per_image_magnify(img: torch.Tensor, fix: tuple[int, int], rho: float, fovea: float, soft: float) -> torch.Tensor:
    """One grid per image, built with NumPy, one grid_sample call per image."""
    _, h, w = img.shape
    v, u = np.meshgrid(np.arange(h) - h / 2 + 0.5, np.arange(w) - w / 2 + 0.5, indexing="ij")
    r = np.hypot(u, v)
    g = np.where(r <= fovea, r, (r + soft) ** 2 / (2 * (fovea + soft)) + fovea - (fovea + soft) / 2)
    d_max = max(math.hypot(a - fix[0], b - fix[1]) for a in (-0.5, h - 0.5) for b in (-0.5, w - 0.5))
    c = d_max / g.max() * math.sqrt(rho)
    rows, cols = fix[0] + c * g / r * v, fix[1] + c * g / r * u
    grid = np.stack([(2 * cols + 1) / w - 1, (2 * rows + 1) / h - 1], axis=-1)[None].astype(np.float32)
    return torch.nn.functional.grid_sample(img[None], torch.from_numpy(grid).to(img.device), mode="bilinear",
                                           padding_mode="zeros", align_corners=False)[0]


def bench_fovea_magnification(size: int, batch: int, reps: int, device: str) -> dict:
    from headcam.pipelines import maths
    from headcam.pipelines.torch.foveation import foveate
    from headcam.pipelines.torch.magnification import magnify

    rng = np.random.default_rng(0)
    x = torch.rand(batch, 3, size, size, device=device)
    border = maths.scaled(12, size)
    fix = torch.from_numpy(rng.integers(border, size - border, (batch, 2))).to(device)
    area = torch.from_numpy(rng.uniform(0.01, 0.5, batch))
    rho = torch.from_numpy(rng.uniform(0.05, 0.35, batch))
    f = k = 20 * size / 96

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def batched():
        return magnify(foveate(x, fix, area), fix, rho, "radial_quad", f, k)

    def per_image():
        return torch.stack([per_image_magnify(per_image_foveate(x[i], tuple(fix[i].tolist()), float(area[i])),
                                              tuple(fix[i].tolist()), float(rho[i]), f, k) for i in range(batch)])

    out = {"size": size, "batch": batch, "device": device, "reps": reps}
    batched(), per_image()  # warm-up
    best = {"batched": 0.0, "per_image": 0.0}
    for _ in range(reps):  # interleaved, best of reps: load on a shared machine hits both alike
        for name, fn in (("batched", batched), ("per_image", per_image)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            best[name] = max(best[name], batch / (time.perf_counter() - start))
    out["batched_img_s"], out["per_image_img_s"] = best["batched"], best["per_image"]
    diff = (batched() - per_image()).abs().max().item()
    out["max_abs_diff"] = diff  # the two implementations compute the same thing (2-D vs separable blur)
    out["ratio"] = out["batched_img_s"] / out["per_image_img_s"]
    return out


def save(results: dict, path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=2))


def print_views(results: dict, sizes: list[int]) -> None:
    nan = float("nan")
    for size in sizes:
        v = results[f"views_cpu_{size}px"]
        print(f"views {size} px: torch {v['ratio_torch_vs_torchvision']:.2f}x, dali-cpu "
              f"{v.get('ratio_dali_cpu_vs_torchvision', nan):.2f}x vs torchvision v2; dali-cpu "
              f"{v.get('ratio_dali_cpu_vs_bare_dali', nan):.2f}x vs a bare DALI pipeline; dali-cpu jitter.order=fixed "
              f"{v.get('ratio_dali_cpu_fixed_vs_fused_dali', nan):.2f}x vs a fused hand-written DALI pipeline")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--short", action="store_true", help="small run (< 60 s) for CI, first size only")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--size", type=int, nargs="+", default=[96, 224], help="view sides (px) for (a); (b) uses the first")
    p.add_argument("--shard-side", type=int, default=128, help="short side (px) of the bench shards' frames")
    p.add_argument("--views-only", action="store_true", help="only (a)'s two-view SimCLR rows")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    n, rounds, reps = (128, 1, 1) if args.short else (512, 5, 3)
    sizes = args.size[:1] if args.short else args.size
    results: dict = {"cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as recipes:
        data = make_dataset(Path(tmp), n, side=args.shard_side)
        fixed = Path(recipes) / "simclr_fixed.yaml"  # SimCLR with DALI's fused colour twist
        fixed.write_text("recipe: simclr\njitter: {order: fixed}\n")
        for size in sizes:
            results[f"views_cpu_{size}px"] = bench_views(data, size, args.workers, batch=32, rounds=rounds,
                                                         fixed_recipe=str(fixed))
            print(json.dumps(results[f"views_cpu_{size}px"], indent=1), flush=True)
        if args.views_only:
            save(results, args.json)
            print_views(results, sizes)
            return 0
        results["dino_multicrop_cpu_224px"] = bench_views(data, 224, args.workers, batch=32, rounds=rounds,
                                                          recipe="dino")
        print(json.dumps(results["dino_multicrop_cpu_224px"], indent=1), flush=True)
        results["views_cpu_in_process"] = bench_views_in_process(data, sizes[0], rounds + 2)
        print(json.dumps(results["views_cpu_in_process"], indent=1), flush=True)
    results["fovea_magnify_cpu"] = bench_fovea_magnification(sizes[0], 32 if args.short else 64, reps, "cpu")
    print(json.dumps(results["fovea_magnify_cpu"], indent=1), flush=True)
    if torch.cuda.is_available():
        results["fovea_magnify_gpu"] = bench_fovea_magnification(224, 128, reps * 5, "cuda")
        print(json.dumps(results["fovea_magnify_gpu"], indent=1), flush=True)
    save(results, args.json)
    print_views(results, sizes)
    d = results["dino_multicrop_cpu_224px"]
    print(f"DINO multi-crop (2 x 224 + 8 x 96 px): torch {d['ratio_torch_vs_torchvision']:.2f}x, dali-cpu "
          f"{d.get('ratio_dali_cpu_vs_torchvision', float('nan')):.2f}x vs torchvision v2")
    one_thread = results["views_cpu_in_process"]["ratio_torch_vs_torchvision"]
    fovea = results["fovea_magnify_cpu"]["ratio"]
    print(f"views in one thread ({sizes[0]} px): torch {one_thread:.2f}x vs torchvision v2; "
          f"foveation+magnification batched {fovea:.2f}x vs per-image (CPU)")
    if args.short:
        print("(--short times 3 batches per method: a crash check, its ratios are rough; run without it for figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
