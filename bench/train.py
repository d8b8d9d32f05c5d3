"""Training-step throughput: real shards through the loader against synthetic batches already in memory.

A much shorter version of the trainer (nanoGPT's bench.py idea): the same method wrapper,
optimiser, autocast and memory format as ``headcam-train``, timed over a few steps. The ratio
real / synthetic says how much of the step the data pipeline costs (goal on a GPU: >= 0.9).

Without CUDA it measures CPU img/s per backbone at small sizes and says that no GPU was
available. Methods: SimCLR on the ResNets and MobileNet, BYOL on resnet18, DINO (2 global + 8 local
crops) and MAE on ViT-S/16, each with its own recipe and views and its published head / decoder
sizes, so the figure is what a step of theirs costs; the synthetic batches copy the real batches'
view shapes. Data: the shared media clips ingested with ``headcam-ingest
videos`` into a temp dir.

    .venv/bin/python bench/train.py [--short] [--json PATH] [--workers N] [--backend torch|dali]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "data" / "media"


def ingest_media(out: Path, size: int, copies: int, fps: int) -> Path:
    """The shared clips (``copies`` symlinked copies, for more distinct frames) at short side ``size``."""
    from headcam.ingest.cli import main as ingest

    src = out / "media"
    src.mkdir(parents=True)
    for i in range(copies):
        for f in sorted(MEDIA.iterdir()):
            (src / f"c{i}_{f.name}").symlink_to(f)
    ds = out / "ds"
    code = ingest(["videos", str(src), "--out", str(ds), "--fps", str(fps), "--size", str(size), "--shard-size", "64",
                   "--val-every", "0", "--saliency", "none", "--stream-by", "one"])
    if code != 0:
        raise SystemExit(f"ingest failed with exit code {code}")
    return ds


#: (method, arch, recipe, views) rows measured; ViTs need sides that are multiples of 16.
RUNS = [("simclr", "resnet18", "simclr", 2), ("simclr", "mobilenet_v2", "simclr", 2),
        ("simclr", "resnet50", "simclr", 2), ("byol", "resnet18", "byol", 2), ("dino", "vit_small_patch16", "dino", 2),
        ("mae", "vit_small_patch16", "mae", 1)]


def build(method: str, arch: str, device: torch.device, cuda_fast: bool):
    from headcam.train.backbones import build_backbone
    from headcam.train.config import TrainConfig
    from headcam.train.methods.base import build_method
    from headcam.train.optim import build_optimizer

    cfg = TrainConfig(method=method, data="-", arch=arch)
    trunk, dim = build_backbone(arch)
    model = build_method(cfg, trunk, dim, n_classes=None, world=1).to(device)
    fmt = torch.channels_last if cuda_fast else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = build_optimizer(model, "sgd", 0.01, 0.0, 0.9)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda_fast else contextlib.nullcontext()
    count = [0]

    def step(views: list[torch.Tensor], labels: torch.Tensor) -> None:
        views = [v.to(device, non_blocking=True).contiguous(memory_format=fmt) for v in views]
        model.begin_step(count[0], 10_000)
        with autocast:
            loss = model(views, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.end_step()
        count[0] += 1

    return step


def timed(step, batches, warmup: int, steps: int, device: torch.device, batch_size: int) -> float:
    """img/s (counting images, not views) after ``warmup`` steps.

    On CUDA: over ``steps`` steps between two syncs (the loader overlaps the GPU). On CPU each step
    is timed alone and the median taken, so a busy shared machine disturbs the figure less.
    """
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    if device.type == "cuda":
        torch.cuda.synchronize()  # sync
        t0 = time.perf_counter()
        for _ in range(steps):
            step(*next(it))
        torch.cuda.synchronize()  # sync
        return steps * batch_size / (time.perf_counter() - t0)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(*next(it))
        times.append(time.perf_counter() - t0)
    return batch_size / statistics.median(times)


def synthetic(like: list[torch.Tensor], device: torch.device):
    """Batches in memory with the real batches' view shapes (multi-crop: globals and locals)."""
    views = [torch.randn(v.shape, device=device) for v in like]
    labels = torch.zeros(like[0].shape[0], dtype=torch.long, device=device)
    while True:
        yield views, labels


def real(ds: Path, recipe: str, n_views: int, batch_size: int, size: int, device: torch.device, workers: int,
         backend: str):
    from headcam.pipelines.loader import LoaderConfig, build_loader
    from headcam.pipelines.spec import resolve_spec
    from headcam.train.trainer import DataPosition, endless_batches

    # ViT local crops must be whole 16 px patches: 96/224 of the side, rounded to a multiple of 16 (96 at 224)
    augment = {"local": {"size": 16 * max(1, round(size * 96 / 224 / 16))}} if recipe == "dino" else None
    loader = build_loader(ds, "train", LoaderConfig(
        augment=resolve_spec(recipe, augment), batch_size=batch_size, n_views=n_views, size=size, backend=backend,
        device=str(device), workers=workers, seed=0, shuffle_buffer=256))
    for batch in endless_batches(loader, DataPosition()):
        yield batch.views, batch.label


def measure(method: str, arch: str, recipe: str, n_views: int, ds: Path, *, size: int, batch_size: int, warmup: int,
            steps: int, device: torch.device, workers: int, backend: str) -> dict[str, float]:
    cuda = device.type == "cuda"
    step = build(method, arch, device, cuda_fast=cuda)
    batches = real(ds, recipe, n_views, batch_size, size, device, workers, backend)
    first, _ = next(batches)
    syn = timed(step, synthetic(first, device), warmup, steps, device, batch_size)
    rl = timed(step, batches, warmup, steps, device, batch_size)
    row = {"method": method, "size": size, "batch": batch_size, "views": len(first),
           "view_sides": sorted({v.shape[-1] for v in first}), "synthetic_img_s": syn, "real_img_s": rl,
           "ratio_real_vs_synthetic": rl / syn}
    print(f"{device.type} {method:6s} {arch:18s} {size:4d}px batch {batch_size:4d} ({len(first)} views): synthetic "
          f"{syn:8.1f} img/s, real ({backend}, {workers} workers) {rl:8.1f} img/s, ratio {rl / syn:.2f}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="a quick run (< 90 s on 2 CPU cores)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: 0 on CPU, 8 on CUDA)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: 1, i.e. img/s per core; steadier on a shared machine)")
    parser.add_argument("--backend", default="torch", choices=["torch", "dali"], help="augmentation backend")
    args = parser.parse_args(argv)
    os.environ.setdefault("HEADCAM_QUIET", "1")
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    result: dict = {"gpu_available": cuda, "cpu_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        if not cuda:
            print("no GPU available: measuring CPU img/s per backbone at small sizes", flush=True)
            size, batch, warmup, steps, fps = (32, 8, 1, 3, 5) if args.short else (64, 16, 2, 8, 25)
            ds = ingest_media(Path(tmp), size=int(size * 1.25), copies=1, fps=fps)
            result["cpu"] = {f"{method}_{arch}": measure(method, arch, recipe, views, ds, size=size, batch_size=batch,
                                                         warmup=warmup, steps=steps, device=torch.device("cpu"),
                                                         workers=args.workers or 0, backend=args.backend)
                             for method, arch, recipe, views in RUNS}
        else:
            result["gpu"] = torch.cuda.get_device_name()
            batch, warmup, steps = (64, 5, 20) if args.short else (128, 10, 60)
            ds = ingest_media(Path(tmp), size=256, copies=4 if args.short else 10, fps=25)
            workers = 8 if args.workers is None else args.workers
            result["cuda"] = {f"{method}_{arch}": measure(method, arch, recipe, views, ds, size=224,
                                                          batch_size=batch, warmup=warmup, steps=steps,
                                                          device=torch.device("cuda"), workers=workers,
                                                          backend=args.backend)
                              for method, arch, recipe, views in RUNS if arch != "mobilenet_v2"}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
