"""``headcam-ingest images``: an image dataset on disk -> the shard contract (DESIGN.md).

Formats (one reader each in ``headcam.ingest.image_formats``): ``folder`` (ImageFolder tree),
``cifar10`` (python pickles), ``stl10`` (binary), ``toybox`` (object videos, frames at 1 fps).
Every format runs on the engine videos use (:mod:`headcam.ingest.engine`): phase 1 stages the
reader's tasks in worker processes (:mod:`headcam.ingest.image_stage`: short side, optional
centre crop, JPEG, saliency, as for a video frame); phase 2 cuts each split, in the reader's
seeded order, into shards (:mod:`headcam.ingest.image_plan`). The source's own splits are kept.

Output is complete or absent: ``dataset.json`` is written last. A killed run, started again with
the same arguments, keeps its staged tasks and written shards and ends byte-identical to an
uninterrupted run; a re-run over a finished dataset with the same parameters does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from headcam.console import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL, UsageError
from headcam.ingest import engine, image_formats
from headcam.ingest.dataset_meta import build_dataset_json, source_entry, split_counts
from headcam.ingest.encode import CROP_SHIFT_UP
from headcam.ingest.engine import Staging, Unit
from headcam.ingest.failures import FailureLog
from headcam.ingest.image_formats.base import Source
from headcam.ingest.image_plan import ShardFiller, plan_id, plan_shards
from headcam.ingest.image_stage import Params, stage_task
from headcam.ingest.pool import Workers
from headcam.shards import schema
from headcam.shards.atomic import prepare_out_dir

PROG = "headcam-ingest images"
DEFAULT_SHARD_SIZE = 1000
#: Short side when --size is not given (CIFAR-10 and STL-10 keep their native size).
DEFAULT_SIZE = {"folder": 256, "toybox": 256}
#: Formats whose images are scaled up to --size when smaller (--upscale / --no-upscale override it).
UPSCALE = {"cifar10", "stl10", "toybox"}
#: Centre crop, and its upward shift, when --crop / --crop-shift are not given: Toybox follows SPEC §7.
DEFAULT_CROP = {"toybox": 224}
DEFAULT_CROP_SHIFT = {"toybox": CROP_SHIFT_UP}


def add_images_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``headcam-ingest images`` (the ingest CLI adds them to its sub-command)."""
    parser.add_argument("--format", required=True, choices=image_formats.FORMATS,
                        help="on-disk layout of SRC: " + "; ".join(f"{f} = {layout}"
                                                                   for f, layout in image_formats.LAYOUTS.items()))
    parser.add_argument("src", metavar="SRC", type=Path, help="dataset folder (or its parent)")
    parser.add_argument("--out", required=True, type=Path, help="output dataset directory")
    parser.add_argument("--size", type=int, default=None,
                        help="short side of the stored images in px (default: 256 for folder/toybox, native for "
                             "cifar10/stl10; 0 keeps the native size). A folder image smaller than that keeps its "
                             "native size: the short side is min(native, SIZE), unless --upscale")
    parser.add_argument("--upscale", action=argparse.BooleanOptionalAction, default=None,
                        help="scale images smaller than --size up to it (default: no for folder, whose images "
                             "come in any size; yes for cifar10/stl10/toybox, whose protocols fix the size)")
    parser.add_argument("--crop", type=int, default=None,
                        help="centre crop CROP x CROP after resizing (default: 224 for toybox, else none; 0 = none)")
    parser.add_argument("--crop-shift", type=int, default=None,
                        help=f"move the crop this many px up (default: {CROP_SHIFT_UP} for toybox as SPEC §7, else 0)")
    parser.add_argument("--saliency", choices=("spectral", "none"), default="spectral",
                        help="store a spectral-residual saliency map KEY.sal.png per image (default) or none")
    parser.add_argument("--shard-size", type=int, default=None,
                        help=f"samples per shard (default: {DEFAULT_SHARD_SIZE})")
    parser.add_argument("--shards", type=int, default=None,
                        help="instead of --shard-size: write each split as SHARDS shards of near-equal size. A "
                             "multiple of ranks x DataLoader workers lets equal-length epochs use every sample")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100 (default: 90)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the write order and of Toybox's iid split (default: 0)")
    parser.add_argument("--fps", type=float, default=None, help="toybox: frames per second, by timestamp (default: 1)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="decode/encode processes, one chunk of images (or one Toybox clip) each "
                             "(default: min(8, CPUs))")


def resolve_params(args: argparse.Namespace) -> Params:
    """Fill format-dependent defaults and reject impossible values as user errors."""
    fmt = args.format
    shard_size = args.shard_size if args.shard_size is not None else (None if args.shards else DEFAULT_SHARD_SIZE)
    p = Params(format=fmt, size=DEFAULT_SIZE.get(fmt, 0) if args.size is None else args.size,
               upscale=fmt in UPSCALE if args.upscale is None else args.upscale,
               crop=DEFAULT_CROP.get(fmt, 0) if args.crop is None else args.crop,
               crop_shift_up=DEFAULT_CROP_SHIFT.get(fmt, 0) if args.crop_shift is None else args.crop_shift,
               saliency=args.saliency, quality=args.quality, seed=args.seed,
               shard_size=shard_size, shards=args.shards,
               fps=(1.0 if args.fps is None else args.fps) if fmt == "toybox" else None)
    if args.fps is not None and fmt != "toybox":
        raise UsageError("--fps applies to --format toybox only")
    if p.size < 0 or p.crop < 0 or p.crop_shift_up < 0:
        raise UsageError("--size, --crop and --crop-shift must be >= 0")
    if p.size and p.crop > p.size:
        raise UsageError(f"--crop {p.crop} is larger than --size {p.size}")
    if not 1 <= p.quality <= 100:
        raise UsageError(f"--quality must be in 1..100, got {p.quality}")
    if args.shard_size is not None and args.shards is not None:
        raise UsageError("give --shard-size or --shards, not both")
    if (p.shard_size or 1) < 1 or (p.shards or 1) < 1:
        raise UsageError("--shard-size and --shards must be >= 1")
    if p.fps is not None and p.fps <= 0:
        raise UsageError(f"--fps must be > 0, got {p.fps}")
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    return p


def inputs_digest(source: Source) -> str:
    """A fingerprint of the input file list and task count: a resume is only valid over the same tasks."""
    h = hashlib.sha256(f"{source.format}\n{source.n_tasks}\n".encode())
    for path in source.inputs:
        h.update(path.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def _sources(src: Path, inputs: list[str], limit: int = 2000) -> list[dict[str, Any]]:
    """Every source file with size and mtime; beyond ``limit`` files (ImageNet) only the root and a count."""
    if len(inputs) > limit:
        return [source_entry(src, n_files=len(inputs))]
    return [source_entry(f) for f in inputs]


def dataset_doc(source: Source, params: dict[str, Any], src: Path, counts: dict[str, int],
                shards: dict[str, int], n_failed: int) -> dict[str, Any]:
    """``dataset.json`` of an image dataset: the common document plus format, notes and failures."""
    return build_dataset_json(
        "images", params, {"names": source.class_names, "n_classes": len(source.class_names)},
        counts, shards, _sources(src, source.inputs),
        extra={"format": source.format, "format_notes": source.notes, "n_failed": n_failed})


def _unit_key(index: int) -> str:
    return f"u{index:06d}"


def _task_unit(source: Source, key: str) -> Unit:
    task = source.task(int(key[1:]))
    return Unit(key, task.inputs(), task)


@engine.stops_cleanly
def run_images(args: argparse.Namespace) -> int:
    """Run ``headcam-ingest images``; returns 0 (all ingested), 3 (some failed) or 1 (nothing ingested)."""
    p = resolve_params(args)
    out: Path = args.out
    params = {**asdict(p), "src": str(args.src.resolve())}
    if engine.already_done(out, params):
        return EXIT_OK
    if not args.src.exists():
        raise UsageError(f"{args.src}: no such file or directory")
    t0 = time.monotonic()
    source = image_formats.open_source(p.format, args.src, p.seed, fps=p.fps)
    prepare_out_dir(out)
    staging = Staging(out)
    staging.open({**params, "inputs": inputs_digest(source)})
    keys = [_unit_key(i) for i in range(source.n_tasks)]
    with Workers(args.workers) as workers:
        engine.stage_units(stage_task, keys, lambda key: _task_unit(source, key), p, staging, staging.journal(),
                           workers, source.unit)
        records = staging.records()
        failures = FailureLog()
        engine.collect_failures(records.values(), failures)
        planned = plan_shards([records[k] for k in keys], p.shard_size, p.shards)
        if not planned:
            failures.write(out)
            staging.remove()
            engine.print_failures(failures)
            print(f"{PROG}: nothing ingested from {args.src}; {failures.summary() or 'no images found'}; "
                  f"see {out / schema.FAILURES}")
            return EXIT_NOTHING_DONE
        filler = ShardFiller(staging.dir, planned, source.extra_schema)
        engine.write_shards(filler.jobs(), len(planned), out, plan_id(planned), workers,
                            sum(s.n_samples for s in planned))
    table = filler.manifest()
    if source.finish is not None:
        table = source.finish(table)
    counts = split_counts(table.column("split").to_pylist())
    shards = split_counts(s.split for s in planned)
    engine.finish(out, {s.name for s in planned}, table, failures,
                  dataset_doc(source, params, args.src, counts, shards, len(failures)))
    per_split = ", ".join(f"{s} {n}" for s, n in counts.items())
    failed = f"; {failures.summary()}, see {out / schema.FAILURES}" if len(failures) else ""
    engine.print_failures(failures)
    print(f"{PROG}: {table.num_rows} images ({per_split}), {len(source.class_names)} classes, "
          f"{len(planned)} shards -> {out} in {time.monotonic() - t0:.1f}s{failed}")
    return EXIT_PARTIAL if len(failures) else EXIT_OK
