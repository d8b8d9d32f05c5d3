"""``headcam-ingest inspect DIR``: what a dataset holds, what was lost, and whether it is consistent.

Prints counts per split and per class (summarised when there are many classes), the failures,
shard counts and sizes on disk, then runs :meth:`Dataset.check`; exits 1 when the shards and
the manifest disagree, so it can gate a pipeline.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from headcam.console import EXIT_NOTHING_DONE, EXIT_OK, UsageError
from headcam.shards.dataset import DatasetError, open_dataset

#: Up to this many classes are listed one by one; beyond, a summary (min/median/max).
LIST_CLASSES = 20
LIST_FAILURES = 10


def add_inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="a dataset directory written by headcam-ingest")


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def _class_lines(labels: list[int], names: list[str], n_classes: int) -> list[str]:
    counts = Counter(labels)
    if n_classes <= LIST_CLASSES:
        def name(c: int) -> str:
            return names[c] if 0 <= c < len(names) else ("(unlabelled)" if c == -1 else "")

        return [f"    {c:>5} {name(c):<20} {counts.get(c, 0)}" for c in sorted(set(range(n_classes)) | set(counts))]
    per = np.array([counts.get(c, 0) for c in range(n_classes)])
    empty = int((per == 0).sum())
    extra = f", unlabelled (-1): {counts[-1]}" if -1 in counts else ""
    return [f"    {n_classes} classes: min {per.min()}, median {int(np.median(per))}, max {per.max()} samples per "
            f"class; {empty} classes empty{extra}"]


def describe(root: Path) -> tuple[list[str], list[str]]:
    """(report lines, consistency problems) for a dataset directory."""
    try:
        ds = open_dataset(root)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    lines = [f"{root}: kind {ds.kind}, {ds.manifest.num_rows} samples, {ds.n_classes} class(es)"]
    splits = ds.manifest.column("split").to_pylist()
    labels = ds.manifest.column("label").to_pylist()
    for split in ds.splits:
        shards = [p for p in ds.shards(split)]
        size = sum(p.stat().st_size for p in shards if p.exists())
        lines.append(f"  {split}: {ds.count(split)} samples in {len(shards)} shards ({_human(size)})")
        lines += _class_lines([lb for sp, lb in zip(splits, labels, strict=True) if sp == split], ds.class_names,
                              ds.n_classes)
    if "clip" in ds.manifest.column_names and ds.kind == "video":
        lines.append(f"  clips: {len(set(ds.manifest.column('clip').to_pylist()))}")
    total = sum(p.stat().st_size for p in root.iterdir() if p.is_file())
    lines.append(f"  on disk: {_human(total)}")
    fails = ds.failures().to_pylist()
    lines.append(f"  failures: {len(fails)}")
    lines += [f"    {f['stage']}: {f['path']}: {f['error_type']}: {f['message']}" for f in fails[:LIST_FAILURES]]
    if len(fails) > LIST_FAILURES:
        lines.append(f"    ... and {len(fails) - LIST_FAILURES} more (failures.parquet)")
    return lines, ds.check()


def run_inspect(args: argparse.Namespace) -> int:
    lines, problems = describe(Path(args.dir))
    if problems:
        lines += [f"INCONSISTENT: {len(problems)} problems", *(f"  {p}" for p in problems)]
    else:
        lines.append("consistent: shards and manifest agree")
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:  # e.g. `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_NOTHING_DONE if problems else EXIT_OK
