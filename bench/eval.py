"""Feature-extraction throughput of frozen trunks (images/s), the cost that dominates linear decoding.

A much shorter version of ``headcam-eval linear`` for benchmarking: the trunk in eval mode under
``inference_mode`` on random normalised batches, at several view sizes, using the same
``trunk_features`` call as the CLI. On CPU it also times channels_last against the default
layout; on CUDA it times bf16 autocast + channels_last (the CLI's path) against plain fp32.
With ``--data DIR`` it also times the whole path (shards -> pipelines loader -> trunk).

Usage: python bench/eval.py [--short] [--json PATH] [--data DATASET_DIR] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

from headcam.eval.features import prepare_trunk, resolve_device, trunk_features
from headcam.eval.models import load_model


def images_per_second(trunk: torch.nn.Module, batch: torch.Tensor, *, repeats: int, fp32_plain: bool = False) -> float:
    """Median-of-runs throughput of one trunk on one batch (after a warm-up call)."""
    device = next(trunk.parameters()).device

    def once() -> None:
        if fp32_plain:
            with torch.inference_mode():
                trunk(batch.to(device)).float().cpu()
        else:
            trunk_features(trunk, batch)
        if device.type == "cuda":
            torch.cuda.synchronize()

    once()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    times.sort()
    return len(batch) / times[len(times) // 2]


def bench_trunks(archs: list[str], sizes: list[int], device: str, batch_size: int, repeats: int) -> dict:
    out: dict = {}
    for arch in archs:
        model = load_model(f"random:{arch}")
        for size in sizes:
            batch = torch.randn(batch_size, 3, size, size)
            trunk = prepare_trunk(model.trunk, device)
            row: dict = {}
            if device == "cuda":
                row["bf16_channels_last_img_s"] = images_per_second(trunk, batch, repeats=repeats)
                plain = prepare_trunk(model.trunk, device).to(memory_format=torch.contiguous_format)
                row["fp32_img_s"] = images_per_second(plain, batch, repeats=repeats, fp32_plain=True)
                row["speedup"] = row["bf16_channels_last_img_s"] / row["fp32_img_s"]
            else:
                row["fp32_img_s"] = images_per_second(trunk, batch, repeats=repeats)
                cl = trunk.to(memory_format=torch.channels_last)
                row["fp32_channels_last_img_s"] = images_per_second(cl, batch.contiguous(
                    memory_format=torch.channels_last), repeats=repeats)
                row["channels_last_ratio"] = row["fp32_channels_last_img_s"] / row["fp32_img_s"]
                trunk.to(memory_format=torch.contiguous_format)
            out[f"{arch}@{size}"] = row
            print(f"{arch:>10} @ {size:>3}px on {device}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()),
                  flush=True)
    return out


def bench_hog(sizes: list[int], n: int = 16) -> dict:
    """HOG baseline descriptors per second (skimage, one image at a time: the CPU cost of that baseline)."""
    from headcam.eval.baselines import hog_features

    out = {}
    for size in sizes:
        images = torch.rand(n, 3, size, size)
        hog_features(images[:1])
        t0 = time.perf_counter()
        hog_features(images)
        out[f"hog@{size}_img_s"] = n / (time.perf_counter() - t0)
        print(f"       hog @ {size:>3}px: {out[f'hog@{size}_img_s']:.3g} img/s", flush=True)
    return out


def bench_end_to_end(data: str, device: str, size: int, batch_size: int) -> dict:
    """Whole extraction of the dataset's first split through the pipelines loader (decode + resize + trunk)."""
    from headcam.eval.features import split_features
    from headcam.shards.dataset import open_dataset

    ds = open_dataset(data)
    model = load_model("random:resnet18")
    split = ds.splits[0]
    t0 = time.perf_counter()
    f = split_features(model, ds, split, size=size, batch_size=batch_size, device=device, cache_dir=None)
    dt = time.perf_counter() - t0
    print(f"end to end resnet18 @ {size}px, {len(f.keys)} images of '{split}': {len(f.keys) / dt:.3g} img/s")
    return {"images": int(len(f.keys)), "img_s": len(f.keys) / dt, "size": size}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--short", action="store_true", help="resnet18/resnet50 at 64 and 128 px, few repeats (CI)")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--data", help="a dataset directory for the end-to-end figure (optional)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    sizes = [64, 128] if args.short else [64, 128, 224]
    repeats = 3 if args.short else 5
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()} threads",
              "batch_size": args.batch_size, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "load_average_1min_at_start": os.getloadavg()[0],
              "trunks": bench_trunks(["resnet18", "resnet50"], sizes, device, args.batch_size, repeats)}
    result["hog"] = bench_hog(sizes)
    if args.data:
        result["end_to_end"] = bench_end_to_end(args.data, device, 128 if args.short else 224, args.batch_size)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
