"""``headcam-ingest videos`` and ``headcam-ingest merge``: head-camera videos -> a video dataset.

Runs on the shared engine (:mod:`headcam.ingest.engine`): phase 1 stages one video per unit, or a
long video as several time-range units (:mod:`headcam.ingest.split`, :mod:`headcam.ingest.stage`);
phase 2 (:mod:`headcam.ingest.finalise`) plans streams, segments and clips, then the engine writes
the shards, manifest, failures and ``dataset.json``.

A killed run resumes where it stopped: staged videos and journaled shards are not redone,
half-written files are temp files that are cleared. ``--part i/n`` runs phase 1 on every n-th
input only (job arrays); ``merge`` runs phase 2 over one or more part directories.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from headcam.console import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL, UsageError
from headcam.ingest import engine, finalise, merge, split
from headcam.ingest.dataset_meta import build_dataset_json, source_entry, split_counts
from headcam.ingest.decode import DECODERS
from headcam.ingest.engine import Staging, Unit
from headcam.ingest.failures import FailureLog
from headcam.ingest.inputs import expand_inputs, video_key
from headcam.ingest.labels import LABEL_FROM, FolderLabels, folder_labels
from headcam.ingest.pool import Workers
from headcam.ingest.stage import FrameParams, VideoUnit, stage_video
from headcam.shards import schema
from headcam.shards.atomic import prepare_out_dir

#: Parameters that change the output; a resumed or merged run must use the same ones.
PLAN_KEYS = ("seg_len", "stream_by", "clip_len", "val_every", "val_tail", "seed", "shard_size", "label_from")

#: How a video recipe's clips map onto --fps / --clip-len and the loader's clip_frames / clip_stride.
RECIPE_HELP = ("video recipes: a recipe that samples T frames at sampling rate r from F fps video reads a window of "
               "T*r source frames. Store it at the source rate, --fps F --clip-len T*r, and read "
               "LoaderConfig(clip_frames=T, clip_stride=r); or at the recipe's rate, --fps F/r --clip-len T, and read "
               "clip_frames=T, clip_stride=1. facebookresearch/mae_st's default (16 frames at rate 4 of 30 fps "
               "video): --fps 30 --clip-len 64, or --fps 7.5 --clip-len 16 (a quarter of the frames to store and "
               "decode). The reference spreads its T frames over the window with linspace, (T*r-1)/(T-1) source "
               "frames apart (4.2 there), which a fixed stride rounds; --fps F*(T-1)/(T*r-1) with clip_stride=1 "
               "gives its spacing exactly (mae_st at rate 4: 7.14; eminorhan/mae_st's SAYCam script, rate 8: 3.54). "
               "A longer --clip-len leaves room for the loader's temporal jitter (a training clip starts wherever "
               "its frames fit). Clips never cross the end of a video (with --label-from segment: of a segment), so "
               "a video's last clip may be shorter; a loader that needs more frames skips it and counts it.")


def add_videos_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = RECIPE_HELP
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, directories (searched recursively by extension) or @list.txt (one path a "
                        "line); put '--' before names that start with a dash")
    p.add_argument("--out", required=True, help="output dataset directory (created; may sit inside an input tree)")
    p.add_argument("--fps", type=float, default=5.0,
                   help="frames sampled per second, by timestamp; any positive rate, e.g. 7.5 (default: 5)")
    p.add_argument("--size", type=int, default=256, help="short side of stored frames in px (default: 256)")
    p.add_argument("--crop", type=int, default=None,
                   help="centre crop to CROP x CROP px, shifted 16 px up, after resizing (default: no crop)")
    p.add_argument("--rotate", type=int, choices=(0, 90, 180, 270), default=0,
                   help="extra clockwise rotation after the container's own (SAYCam: 180) (default: 0)")
    p.add_argument("--seg-len", type=float, default=288.0,
                   help="temporal segment (class) length in seconds along each stream (default: 288)")
    p.add_argument("--stream-by", choices=("parent", "file", "one"), default="parent",
                   help="what forms one child's stream: videos in the same parent directory, each file alone, or "
                        "all videos; videos of a stream in sorted-name order (default: parent)")
    p.add_argument("--clip-len", type=int, default=8,
                   help="consecutive sampled frames per clip, the most a loader's clip can span (see 'video "
                        "recipes' below) (default: 8)")
    p.add_argument("--label-from", choices=LABEL_FROM, default="segment",
                   help="segment: each frame's label is its temporal segment (--seg-len) along its stream; parent: "
                        "each video's label is its parent folder's name (class_name/video.mp4, as SSv2- and "
                        "Kinetics-style sets ship), classes numbered in sorted name order and listed in "
                        "dataset.json; the split is then the set's own when videos sit under train/, val/ "
                        "(validation/) or test/ folders, else whole videos are held out per class (--val-every, "
                        "--val-tail count videos), never clips of one video on both sides (default: segment)")
    p.add_argument("--val-every", type=int, default=10,
                   help="every Nth clip of each segment (--label-from parent: Nth video of each class) goes to the "
                        "val split; 0: no val split (default: 10)")
    p.add_argument("--val-tail", type=float, default=0.0,
                   help="instead of --val-every: the last FRACTION of each segment's clips (--label-from parent: "
                        "of each class's videos), one whole time range per segment, goes to val, so held-out frames "
                        "are far in time from the training frames (default: 0, off)")
    p.add_argument("--saliency", default="spectral",
                   help="'spectral' (spectral residual, no weights), 'none', or PATH to a TorchScript saliency "
                        "model (default: spectral)")
    p.add_argument("--decoder", choices=DECODERS, default="pyav",
                   help="video decoder; nvdec: NVIDIA hardware decoding through DALI, needs CUDA (default: pyav)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="decoding processes, one unit of work each (default: min(8, CPUs))")
    p.add_argument("--unit-frames", type=int, default=split.UNIT_FRAMES, metavar="N",
                   help="cut videos longer than 2 x N sampled frames into time-range units of about N frames, so "
                        "one long video keeps every worker busy; the output is the same whatever N; 0: one unit "
                        f"per video (default: {split.UNIT_FRAMES})")
    p.add_argument("--part", default=None, metavar="I/N",
                   help="decode only part I of N of the sorted inputs into OUT's staging area; then run "
                        "'headcam-ingest merge OUT' when all parts are done")
    p.add_argument("--shard-size", type=int, default=2000, help="about this many samples per shard (default: 2000)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality (default: 90)")
    p.add_argument("--seed", type=int, default=0, help="seed of the global clip shuffle (default: 0)")


def add_merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="OUT", help="directory that holds staged parts (from --part runs)")
    p.add_argument("parts", nargs="*", metavar="PARTDIR", help="further directories with staged parts")
    p.add_argument("--out", default=None, help="write the dataset here instead of OUT")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="shard-writing processes (default: min(8, CPUs))")
    p.add_argument("--part", default=None, metavar="I/N",
                   help="write only part I of N of the shards (the N parts may run at the same time, e.g. as a job "
                        "array); then the same command without --part checks that all N finished and writes the "
                        "manifest and dataset.json (default: write every shard, then those)")


def _parse_part(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--part must look like I/N (e.g. 2/8), got {text!r}") from None
    if not 1 <= i <= n:
        raise UsageError(f"--part {text}: need 1 <= I <= N")
    return i, n


def _validate(args: argparse.Namespace) -> None:
    checks = [(args.fps > 0, "--fps must be > 0"), (args.size > 0, "--size must be > 0"),
              (args.crop is None or 0 < args.crop <= args.size, "--crop must be in 1..--size"),
              (args.seg_len > 0, "--seg-len must be > 0"), (args.clip_len >= 1, "--clip-len must be >= 1"),
              (args.val_every >= 0, "--val-every must be >= 0"), (args.workers >= 1, "--workers must be >= 1"),
              (args.unit_frames >= 0, "--unit-frames must be >= 0"),
              (0 <= args.val_tail < 1, "--val-tail must be in [0, 1)"),
              (args.shard_size >= 1, "--shard-size must be >= 1"), (1 <= args.quality <= 100, "--quality: 1..100")]
    for ok, msg in checks:
        if not ok:
            raise UsageError(msg)
    for item in args.inputs:  # a typo on the command line; a missing line of an @list is a failure row instead
        path = item[1:] if item.startswith("@") and not os.path.exists(item) else item
        if not os.path.exists(path):
            raise UsageError(f"{path}: no such file or directory")
    if args.decoder == "nvdec":
        from headcam.ingest.nvdec import cuda_available

        if not cuda_available():
            raise UsageError("--decoder nvdec needs a CUDA GPU (NVDEC) and none is visible; use --decoder pyav")
    if args.saliency not in ("spectral", "none"):
        if not os.path.isfile(args.saliency):
            raise UsageError(f"--saliency: no such model file {args.saliency!r} (or use 'spectral' / 'none')")
        args.saliency = os.path.abspath(args.saliency)


#: Plan keys added after datasets were made without them, with the value that reproduces those datasets: left
#: out of the saved parameters at that value, so an older staging area or dataset still resumes or is found done.
LATER_KEYS = {"label_from": "segment"}


def _params(args: argparse.Namespace) -> dict[str, Any]:
    frame = FrameParams(fps=args.fps, size=args.size, crop=args.crop, rotate=args.rotate, quality=args.quality,
                        saliency=args.saliency, decoder=args.decoder)
    plan = {k: getattr(args, k) for k in PLAN_KEYS if LATER_KEYS.get(k, object()) != getattr(args, k)}
    return {**asdict(frame), **plan}


@engine.stops_cleanly
def run_videos(args: argparse.Namespace) -> int:
    _validate(args)
    part = _parse_part(args.part)
    out = Path(args.out)
    prepare_out_dir(out)
    params = _params(args)
    if engine.already_done(out, params):
        return EXIT_OK
    staging = Staging(out)
    staging.open(params)
    journal = staging.journal(f"part-{part[0]}-of-{part[1]}" if part else "all")
    failures = FailureLog()
    found = expand_inputs(args.inputs, failures, out)
    for row in failures.rows:
        journal.append("input", row["path"], **row)
    if args.label_from == "parent":  # a layout no split rule fits: say so before decoding anything
        folder_labels(found.videos, args.val_every, args.val_tail)
    videos = found.videos[part[0] - 1::part[1]] if part else found.videos
    if not found.videos and not failures:
        print(f"no video files found in {' '.join(args.inputs)}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    frame = FrameParams(**{k: params[k] for k in FrameParams.__dataclass_fields__})
    paths = {video_key(path): path for path in videos}
    units = _plan_units(paths, frame, args.unit_frames)
    with Workers(args.workers) as workers:
        engine.stage_units(stage_video, list(units), units.__getitem__, frame, staging, journal, workers, "unit")
        whole = split.restage_whole(staging.records().values(), sorted(k for k in paths if k not in units))
        if whole:  # a part failed or the parts do not meet: staged whole, as an unsplit ingest would
            engine.stage_units(stage_video, whole, lambda key: Unit(key, (paths[key],), VideoUnit(paths[key])),
                               frame, staging, journal, workers, "video")
        if not part:
            return finalise_dataset([out], out, workers)
    journal.append("part", f"{part[0]}/{part[1]}", n_videos=len(videos))  # merge checks every part finished
    records = list(split.video_records(journal.done(engine.UNIT).values()).values())
    failed = sum(1 for units_of_video in records if units_of_video[0]["failures"])
    engine.collect_failures((units_of_video[0] for units_of_video in records), failures)
    engine.print_failures(failures)
    print(f"part {part[0]}/{part[1]} staged: {len(videos)} videos ({failed} failed); run "
          f"`headcam-ingest merge {out}` when all parts are done")
    return EXIT_PARTIAL if failed or failures else EXIT_OK


def _plan_units(paths: dict[str, str], frame: FrameParams, unit_frames: int) -> dict[str, Unit]:
    """The units of work, largest first (so the last ones to finish are short): a whole video, or the
    time-range parts of a long one (:func:`headcam.ingest.split.plan`)."""
    sized = []
    for key, path in paths.items():
        spans, size = split.plan(path, frame.fps, unit_frames, frame.decoder) if unit_frames else ([None], 0.0)
        sized += [(-size, split.unit_key(key, j, len(spans)), Unit(split.unit_key(key, j, len(spans)), (path,),
                                                                    VideoUnit(path, span)))
                  for j, span in enumerate(spans)]
    return {key: unit for _, key, unit in sorted(sized, key=lambda s: (s[0], s[1]))}


@engine.stops_cleanly
def run_merge(args: argparse.Namespace) -> int:
    dirs = [Path(args.dir), *(Path(d) for d in args.parts)]
    dest = Path(args.out) if args.out else dirs[0]
    for d in dirs:
        if not Staging(d).exists() and not (d == dest and (d / schema.DATASET_JSON).exists()):
            raise UsageError(f"{d} holds no staged ingest (no {engine.STAGING}/{engine.PARAMS}); "
                             "run headcam-ingest videos --part")
    part = _parse_part(args.part)
    prepare_out_dir(dest)
    if engine.already_done(dest, None):
        merge.remove_part_journals(dest)  # left by a merge killed after it completed
        return EXIT_OK
    _check_parts(dirs)
    with Workers(args.workers) as workers:
        return finalise_dataset(dirs, dest, workers, part)


def _check_parts(dirs: list[Path]) -> None:
    """Refuse to merge while a part of a ``--part i/n`` run is missing or unfinished."""
    finished: set[tuple[int, int]] = set()
    counts: set[int] = set()
    for d in dirs:
        for journal in Staging(d).journals():
            if "-of-" in journal.path.name:
                counts.add(int(journal.path.name.split("-of-")[1].split(".")[0]))
            finished |= {tuple(int(x) for x in name.split("/")) for name in journal.done("part")}
    counts |= {n for _, n in finished}
    missing = sorted(f"{i}/{n}" for n in counts for i in range(1, n + 1) if (i, n) not in finished)
    if missing:
        raise UsageError(f"parts not finished (or not in the directories given): {', '.join(missing)}; run them first")


def _load_params(dirs: list[Path]) -> dict[str, Any]:
    params = [Staging(d).params() for d in dirs]
    for d, p in zip(dirs[1:], params[1:], strict=True):
        if p != params[0]:
            raise UsageError(f"{d} was staged with other parameters than {dirs[0]}; cannot merge them")
    return params[0]


def _collect(dirs: list[Path], stream_by: str, failures: FailureLog) -> list[finalise.StagedVideo]:
    """Staged videos (by key, de-duplicated across parts; a split video from its parts) and failures
    from every journal."""
    staged: dict[str, finalise.StagedVideo] = {}
    seen: set[str] = set()
    for d in dirs:
        staging = Staging(d)
        for journal in staging.journals():
            for row in journal.done("input").values():
                failures.add(row["path"], row["stage"], row["error_type"], row["message"])
        for key, units in sorted(split.video_records(staging.records().values()).items()):  # not completion order
            if key in seen:
                continue
            seen.add(key)
            engine.collect_failures(units, failures)
            if sum(u["n_samples"] for u in units):
                staged[key] = finalise.StagedVideo.load(staging.dir, key, units,
                                                        finalise.stream_of(units[0]["path"], stream_by))
    return [staged[k] for k in sorted(staged)]


def finalise_dataset(dirs: list[Path], out: Path, workers: Workers, part: tuple[int, int] | None = None) -> int:
    """Phase 2 over everything staged in ``dirs``, into ``out`` (only part i of n's shards with ``part``,
    :mod:`headcam.ingest.merge`); returns the exit code."""
    params = _load_params(dirs)
    failures = FailureLog()
    videos = _collect(dirs, params["stream_by"], failures)
    if not videos:
        failures.write(out)
        engine.print_failures(failures)
        print(f"nothing ingested: {failures.summary() or 'no videos'}; see {out / schema.FAILURES}", file=sys.stderr)
        return EXIT_NOTHING_DONE
    folders = (folder_labels([v.path for v in videos], params["val_every"], params.get("val_tail", 0.0))
               if params.get("label_from") == "parent" else None)
    p = finalise.plan(videos, params["seg_len"], params["clip_len"], params["val_every"], params["seed"],
                      params["shard_size"], params.get("val_tail", 0.0), folders.videos if folders else None)
    table, plan_id = finalise.manifest(p)
    if part:
        return merge.write_part(p, dirs, out, plan_id, workers, part)
    merge.write_all(p, dirs, out, plan_id, workers)
    names = p.shard_names()
    counts = split_counts(table.column("split").to_pylist())
    sources = [source_entry(v.path, key=v.key, stream=v.stream, video_index=v.video_index, offset=v.offset,
                            duration=v.duration, n_frames=len(v.pts), stream_index=v.summary["probe"]["stream_index"],
                            n_video_streams=v.summary["probe"]["n_video_streams"], codec=v.summary["probe"]["codec"],
                            first_pts=v.summary["first_pts"]) for v in p.videos]
    classes = _classes(p, folders)
    doc = build_dataset_json("video", params, classes, counts, {s: len(g) for s, g in p.shards.items()}, sources,
                             extra={"n_clips": len(p.clips), "failures": len(failures)})
    engine.finish(out, {name for _, name, _ in names}, table, failures, doc)
    merge.remove_part_journals(out)
    n_shards = len(names)
    split_text = ", ".join(f"{n} {s}" for s, n in counts.items())
    failed = f"; {failures.summary()}, see {schema.FAILURES}" if len(failures) else ""
    engine.print_failures(failures)
    print(f"ingested {len(p.videos)} videos -> {split_text} samples, {len(p.clips)} clips, "
          f"{classes['n_classes']} {'folder' if folders else 'segment'} classes, {n_shards} shards in {out}{failed}")
    return EXIT_PARTIAL if len(failures) else EXIT_OK


def _classes(p: finalise.Plan, folders: FolderLabels | None) -> dict[str, Any]:
    """``dataset.json``'s classes: the folder names (as image datasets list theirs), or the segments' ranges."""
    if folders:
        return {"n_classes": len(folders.names), "names": folders.names}
    return {"n_classes": p.n_classes, "ranges": [{k: r[k] for k in ("stream", "first_class", "n_classes", "duration")}
                                                 for r in p.class_ranges]}
