"""``headcam-ingest images``: an image dataset on disk -> the shard contract (DESIGN.md).

Formats (one reader each in ``headcam.ingest.image_formats``): ``folder`` (ImageFolder tree),
``cifar10`` (python pickles), ``stl10`` (binary), ``toybox`` (object videos, frames at 1 fps).
Every format goes through the same steps as a video frame: optional short-side resize and
centre crop, JPEG, spectral-residual saliency map. The source's own splits are kept; the
samples of a split are written in a seeded random order (so shards mix classes) to rolling
shards ``<split>-NNNNNN.tar``.

Output is complete or absent: ``dataset.json`` is written last, after the shards,
``manifest.parquet`` and ``failures.parquet``. Every finished shard is journaled
(:class:`ResumableWriter`), so a killed run, started again with the same arguments, keeps its
finished shards and continues after the last one, ending byte-identical to an uninterrupted run;
a re-run over a finished dataset with the same parameters does nothing and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import multiprocessing
import re
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from headcam.console import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL, UsageError, progress
from headcam.ingest import image_formats
from headcam.ingest.dataset_meta import build_dataset_json, source_entry, split_counts, write_dataset_json
from headcam.ingest.encode import CROP_SHIFT_UP, center_crop, encode_jpeg, resize_short_side
from headcam.ingest.failures import FailureLog
from headcam.ingest.image_formats.base import Decoded, Failure, Source, Task
from headcam.ingest.saliency import encode_saliency_png, spectral_residual_saliency
from headcam.shards import schema
from headcam.shards.atomic import prepare_out_dir, remove_stale_temps
from headcam.shards.dataset import manifest_table, write_table
from headcam.shards.journal import Journal
from headcam.shards.writer import Sample, ShardWriter

PROG = "headcam-ingest images"
DEFAULT_SHARD_SIZE = 1000
#: Short side when --size is not given (CIFAR-10 and STL-10 keep their native size).
DEFAULT_SIZE = {"folder": 256, "toybox": 256}
#: Centre crop, and its upward shift, when --crop / --crop-shift are not given: Toybox follows SPEC §7.
DEFAULT_CROP = {"toybox": 224}
DEFAULT_CROP_SHIFT = {"toybox": CROP_SHIFT_UP}
#: Files a run of this command may leave in OUT, and so may remove when it starts over.
_OWN_FILE = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{6})\.(tar|idx|tar\.rows\.parquet)$")
#: Side file of a shard's manifest rows while a run is in progress.
_ROWS_SUFFIX = ".rows.parquet"


@dataclass(frozen=True)
class Params:
    """Everything that decides the output bytes (saved in dataset.json; a re-run must match it)."""

    format: str
    size: int  # short side; 0 = native
    crop: int  # centre crop side; 0 = none
    crop_shift_up: int
    saliency: str
    quality: int
    seed: int
    shard_size: int | None  # samples per shard, or
    shards: int | None  # shards per split, of near-equal size
    fps: float | None  # toybox only


def add_images_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``headcam-ingest images`` (the ingest CLI adds them to its sub-command)."""
    parser.add_argument("--format", required=True, choices=image_formats.FORMATS,
                        help="on-disk layout of SRC: folder = SRC/[train|val|test/]<class>/*.jpg; "
                             "cifar10 = cifar-10-batches-py; stl10 = stl10_binary; "
                             "toybox = ROOT/<super>/<cat>_<id>_pivothead/*.mp4")
    parser.add_argument("src", metavar="SRC", type=Path, help="dataset folder (or its parent)")
    parser.add_argument("--out", required=True, type=Path, help="output dataset directory")
    parser.add_argument("--size", type=int, default=None,
                        help="resize so the short side is SIZE px (default: 256 for folder/toybox, native size "
                             "for cifar10/stl10; 0 keeps the native size)")
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
                             "multiple of ranks x DataLoader workers lets equal-length epochs use every sample "
                             "(not for toybox, whose frame count is known only after decoding)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100 (default: 90)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the write order and of Toybox's iid split (default: 0)")
    parser.add_argument("--fps", type=float, default=None, help="toybox: frames per second, by timestamp (default: 1)")
    parser.add_argument("--workers", type=int, default=1,
                        help="decode/encode processes (default: 1; 0 or 1 = in this process)")


def resolve_params(args: argparse.Namespace) -> Params:
    """Fill format-dependent defaults and reject impossible values as user errors."""
    fmt = args.format
    shard_size = args.shard_size if args.shard_size is not None else (None if args.shards else DEFAULT_SHARD_SIZE)
    p = Params(format=fmt, size=DEFAULT_SIZE.get(fmt, 0) if args.size is None else args.size,
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
    if args.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {args.workers}")
    return p


# ---------------------------------------------------------------------------------------------
# Per image: the work done in a worker process


@dataclass
class Encoded:
    sample: Sample
    row: dict[str, Any]  # manifest row without its shard


@dataclass
class TaskResult:
    encoded: list[Encoded] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def encode_image(d: Decoded, p: Params) -> Encoded:
    """Resize, crop, JPEG and saliency for one image, as for a video frame (SPEC §1-2)."""
    rgb = resize_short_side(d.rgb, p.size) if p.size else d.rgb
    if p.crop:
        rgb = center_crop(rgb, p.crop, shift_up=p.crop_shift_up)
    sal = encode_saliency_png(spectral_residual_saliency(rgb)) if p.saliency == "spectral" else None
    h, w = rgb.shape[:2]
    meta = {"source": d.source, "frame_index": d.frame_index, "label": d.label, "split": d.split, **d.extra}
    if d.pts == d.pts:  # not NaN: a video frame
        meta["pts"] = d.pts
    row = dict(key=d.key, split=d.split, label=d.label, source=d.source, stream="", video_index=-1,
               frame_index=d.frame_index, pts=d.pts, stream_time=float("nan"), clip=-1, width=w, height=h,
               has_saliency=sal is not None, **d.extra)
    return Encoded(Sample(key=d.key, jpg=encode_jpeg(rgb, p.quality), label=d.label, meta=meta, saliency_png=sal), row)


def run_task(task: Task, p: Params) -> TaskResult:
    """Decode and encode one task. A failure in an atomic task (a video) drops its other samples."""
    out = TaskResult()
    for item in task.decode():
        if isinstance(item, Failure):
            out.failures.append(item)
            continue
        try:
            out.encoded.append(encode_image(item, p))
        except Exception as e:  # noqa: BLE001 - e.g. an image smaller than the crop: record it, go on
            out.failures.append(Failure.of(item.source, "encode", e))
    if out.failures and getattr(task, "atomic", False):
        out.encoded = []
    return out


def ordered_map(fn: Callable[..., TaskResult], tasks: Iterable[Task], p: Params, workers: int) -> Iterator[TaskResult]:
    """``fn(task, p)`` over ``tasks`` in order, with at most ``2 * workers`` tasks in flight (bounded memory)."""
    if workers <= 1:
        yield from (fn(t, p) for t in tasks)
        return
    # spawn, not fork: the parent may hold threads (torch, PyAV) that a forked child would inherit mid-lock
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: list[Future[TaskResult]] = []
        for t in tasks:
            pending.append(pool.submit(fn, t, p))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for f in pending:
            yield f.result()


# ---------------------------------------------------------------------------------------------
# The command


def _finished_meta(out: Path) -> dict[str, Any] | None:
    """``dataset.json`` of a finished dataset in ``out``, or None when there is none."""
    meta_path = out / schema.DATASET_JSON
    if not meta_path.is_file():
        return None
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"{meta_path} is unreadable ({e}); delete {out} or use another --out") from e


@dataclass(frozen=True)
class ShardPlan:
    """How many samples shard ``index`` of a split holds: ``shard_size`` each, or ``shards`` near-equal ones."""

    shard_size: int | None
    shards: int | None
    split_sizes: dict[str, int]

    def size(self, split: str, index: int) -> int:
        if self.shards is None:
            return self.shard_size or DEFAULT_SHARD_SIZE
        base, extra = divmod(self.split_sizes.get(split, 0), self.shards)
        return max(1, base + (index < extra))


def inputs_digest(source: Source) -> str:
    """A fingerprint of the input file list and task count: a resume is only valid over the same stream."""
    h = hashlib.sha256(f"{source.format}\n{source.n_tasks}\n".encode())
    for path in source.inputs:
        h.update(path.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


class ResumableWriter:
    """Rolling shards per split, journaled so a killed run resumes where its last shard ended.

    The task stream is deterministic (same inputs, same seed), so a position in it is a
    *cursor*: (task index, samples of that task already written). Each finished shard gets its
    manifest rows in a side file ``<shard>.rows.parquet`` and one journal record with the new
    failures and the cursor after its last sample. A resumed run keeps the journaled shards,
    deletes anything written after them, skips the tasks before the cursor and drops the cursor
    task's first samples: shards and manifest come out byte-identical to an uninterrupted run.
    Memory stays bounded by one shard's rows; the manifest is assembled from the side files at
    the end, which are then deleted.
    """

    def __init__(self, out: Path, p: Params, src: Path, source: Source):
        self.out, self.extra_schema = out, source.extra_schema
        self.plan = ShardPlan(p.shard_size, p.shards, source.split_sizes or {})
        run = {"params": asdict(p), "src": str(src.resolve()), "inputs": inputs_digest(source)}
        self.journal = Journal(out / schema.JOURNAL)
        first = self.journal.records[0] if self.journal.records else None
        if first is not None and first.get("kind") != "images-run":
            raise UsageError(f"{out} holds an unfinished ingest of another kind ({schema.JOURNAL}); use another --out")
        if first is not None and {k: first.get(k) for k in run} != run:
            raise UsageError(f"{out} holds an unfinished images ingest of other inputs or parameters (or the "
                             "input files changed since); rerun it as it was, or delete the directory")
        self.failures = FailureLog()
        self.cursor = (0, 0)
        self.shards: list[str] = []  # journaled shards, in write order
        self._split: str | None = None  # the split being written
        self._unsharded: dict[str, dict[str, Any]] = {}  # rows whose shard is not written yet
        next_index: dict[str, int] = {}
        for rec in self.journal.done("shard").values():
            self.shards.append(rec["name"])
            for f in rec["failures"]:
                self.failures.add(**f)
            self.cursor = tuple(rec["cursor"])
            next_index[rec["split"]] = rec["index"] + 1
        self._failures_journaled = len(self.failures)
        self.resumed = first is not None
        if first is None:
            self.journal.append("images-run", "images", **run)
        self._clear_unjournaled(next_index)
        self.writers = {split: self._writer(split, i) for split, i in next_index.items()}

    def _writer(self, split: str, index: int = 0) -> ShardWriter:
        return ShardWriter(self.out, split, max_count=self.plan.size(split, index), start_index=index)

    def _clear_unjournaled(self, next_index: dict[str, int]) -> None:
        """Delete temp files, shards past the journal, and outputs of an earlier unfinished run."""
        remove_stale_temps(self.out)
        for path in self.out.iterdir():
            m = _OWN_FILE.match(path.name)
            stale_shard = m is not None and int(m["index"]) >= next_index.get(m["split"], 0)
            if stale_shard or path.name in (schema.MANIFEST, schema.FAILURES):
                path.unlink()

    def add(self, task_index: int, res: TaskResult) -> None:
        """Write one task's samples, skipping those a resumed run already has."""
        for f in res.failures:
            self.failures.add(f.path, f.stage, f.error_type, f.message)
        skip = self.cursor[1] if task_index == self.cursor[0] else 0
        for j, enc in enumerate(res.encoded[skip:], start=skip):
            split = enc.row["split"]
            if self._split not in (None, split):  # a split is contiguous: close its last shard now
                self._flush(self.writers[self._split], (task_index, j))
            self._split = split
            if split not in self.writers:
                self.writers[split] = self._writer(split)
            w = self.writers[split]
            self._unsharded[enc.row["key"]] = enc.row
            w.write(enc.sample)
            if w.written:  # this sample completed a shard
                self._record(w, (task_index, j + 1))

    def _flush(self, w: ShardWriter, cursor: tuple[int, int]) -> None:
        w.flush()
        if w.written:
            self._record(w, cursor)

    def _record(self, w: ShardWriter, cursor: tuple[int, int]) -> None:
        """Rows and journal record of the shard ``w`` just wrote; ``cursor``: the position after its last sample."""
        shard = w.written[-1][1]
        rows = [self._unsharded.pop(key) for key, _ in w.written]
        w.written.clear()  # consumed: keeps the writer's memory to one shard
        for r in rows:
            r["shard"] = shard
        write_table(self.out / f"{shard}{_ROWS_SUFFIX}", manifest_table(rows, self.extra_schema))
        new_failures = self.failures.rows[self._failures_journaled:]
        self._failures_journaled += len(new_failures)
        self.journal.append("shard", shard, split=w.split, index=w.index - 1, failures=new_failures,
                            cursor=list(cursor))
        self.shards.append(shard)
        self.cursor = cursor
        w.max_count = self.plan.size(w.split, w.index)  # the next shard's size

    def close(self, n_tasks: int) -> pa.Table | None:
        """Flush the last partial shards; returns the manifest (None when nothing was written)."""
        for w in self.writers.values():
            self._flush(w, (n_tasks, 0))
        if not self.shards:
            return None
        return pa.concat_tables([pq.read_table(self.out / f"{s}{_ROWS_SUFFIX}") for s in self.shards])

    def shard_counts(self) -> dict[str, int]:
        return {split: w.index for split, w in sorted(self.writers.items())}

    def clean_up(self) -> None:
        """The run is over (dataset.json written, or nothing to write): journal and side files have served."""
        for s in self.shards:
            (self.out / f"{s}{_ROWS_SUFFIX}").unlink(missing_ok=True)
        self.journal.path.unlink(missing_ok=True)


def _sources(src: Path, inputs: list[str], limit: int = 2000) -> list[dict[str, Any]]:
    """Every source file with size and mtime; beyond ``limit`` files (ImageNet) only the root and a count."""
    if len(inputs) > limit:
        return [source_entry(src, n_files=len(inputs))]
    return [source_entry(f) for f in inputs]


def dataset_doc(source: Source, p: Params, src: Path, counts: dict[str, int], shards: dict[str, int],
                n_failed: int) -> dict[str, Any]:
    """``dataset.json`` of an image dataset: the common document plus format, notes and failures."""
    return build_dataset_json(
        "images", asdict(p), {"names": source.class_names, "n_classes": len(source.class_names)},
        counts, shards, _sources(src, source.inputs),
        extra={"format": source.format, "root": str(src.resolve()), "format_notes": source.notes,
               "n_failed": n_failed})


def run_images(args: argparse.Namespace) -> int:
    """Run ``headcam-ingest images``; returns 0 (all ingested), 3 (some failed) or 1 (nothing ingested)."""
    p = resolve_params(args)
    out: Path = args.out
    done = _finished_meta(out)
    if done is not None:
        if done.get("params") == asdict(p) and done.get("root") == str(args.src.resolve()):
            print(f"{PROG}: {out} is already complete with these inputs and parameters; nothing to do")
            return EXIT_OK
        raise UsageError(f"{out} holds a finished dataset made from other inputs or parameters; "
                         "use another --out or delete it")
    if not args.src.exists():
        raise UsageError(f"{args.src}: no such file or directory")
    t0 = time.monotonic()
    source = image_formats.open_source(p.format, args.src, p.seed, fps=p.fps)
    if p.shards is not None and source.split_sizes is None:
        raise UsageError(f"--shards needs split sizes known before decoding; use --shard-size for {p.format}")
    prepare_out_dir(out)
    writer = ResumableWriter(out, p, args.src, source)
    first_task = writer.cursor[0]
    if writer.resumed:
        print(f"{PROG}: resuming in {out} at {source.unit} {first_task} of {source.n_tasks} "
              f"({len(writer.shards)} shards already written)")
    tasks = itertools.islice(source.tasks, first_task, None)
    results = ordered_map(run_task, tasks, p, args.workers)
    bar = progress(results, desc=f"{PROG} ({p.format})", total=source.n_tasks - first_task, unit=source.unit)
    for task_index, res in enumerate(bar, start=first_task):
        writer.add(task_index, res)
    table = writer.close(source.n_tasks)
    failures = writer.failures
    failures.write(out)
    if table is None:
        writer.clean_up()
        print(f"{PROG}: nothing ingested from {args.src}; {failures.summary() or 'no images found'}; "
              f"see {out / schema.FAILURES}")
        return EXIT_NOTHING_DONE
    if source.finish is not None:
        table = source.finish(table)
    write_table(out / schema.MANIFEST, table)
    shards = writer.shard_counts()
    counts = split_counts(table.column("split").to_pylist())
    write_dataset_json(out, dataset_doc(source, p, args.src, counts, shards, len(failures)))
    writer.clean_up()
    per_split = ", ".join(f"{s} {n}" for s, n in counts.items())
    failed = f"; {failures.summary()}, see {out / schema.FAILURES}" if len(failures) else ""
    print(f"{PROG}: {table.num_rows} images ({per_split}), {len(source.class_names)} classes, "
          f"{sum(shards.values())} shards -> {out} in {time.monotonic() - t0:.1f}s{failed}")
    return EXIT_PARTIAL if len(failures) else EXIT_OK
