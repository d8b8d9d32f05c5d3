"""Clip loading benchmark: clips from shards against decoding the same clips from the source videos, clips/s.

mae_st's recipe: 16 frames at sampling rate 4 of 30 fps video, views at 224 px (the ``mae`` view recipe: random
resized crop 0.2-1, bicubic, flip). The shards hold the videos at 30 fps, short side 256, in clips of 64 frames
(``--fps 30 --clip-len 64``); the loader reads ``clip_frames=16, clip_stride=4`` with temporal jitter. A second
shard row stores the recipe's rate instead (``--fps 7.5 --clip-len 20``, ``clip_stride=1``): a quarter of the
frames to read past. The alternative is what a video dataset class does (mae_st's Kinetics loader): for every
clip, open the source video with PyAV, seek to the keyframe before the clip, decode to its frames, keep every 4th,
resize to the stored size (libswscale's area filter, as ingest) and make the same views with the same view maker.
It decodes exactly the frames the 30 fps shard loader's epoch picked (the same windows, starts jittered), with the
same DataLoader workers and batch size, so the rows differ only in where the frames come from. All run in one
process, one after the other, best of ``--rounds``; the load average (a shared machine) is printed with the figures.

Source videos: 640 x 480, 30 fps H.264 with x264's default keyframe interval (250 frames, as a
camera writes), made once from the shared media and cached (``bench/ingest.py``'s ``make_video``).

    .venv/bin/python bench/clips.py [--short] [--json PATH] [--workers N] [--rounds N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from headcam.pipelines.loader import LoaderConfig, build_loader
from headcam.pipelines.spec import recipe_spec
from headcam.pipelines.torch.views import ViewMaker

FRAMES, STRIDE, SIZE, STORED_SIDE, FPS = 16, 4, 224, 256, 30
#: The two ways to store mae_st's window (``headcam-ingest videos --help``): (--fps, --clip-len, clip_stride).
#: The recipe's rate keeps 4 frames of jitter room (--clip-len 20), as the source rate keeps 4 starts (64 - 61 + 1).
STORAGES = {"30fps": (30.0, 64, STRIDE), "7.5fps": (7.5, 20, 1)}


def _make_videos(n: int, seconds: float) -> list[Path]:
    """bench/ingest.py's cached test videos (the same files its ingest rows decode)."""
    spec = importlib.util.spec_from_file_location("bench_ingest", Path(__file__).with_name("ingest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_videos(n, seconds)


def ingest(videos: list[Path], out: Path, workers: int, fps: float, clip_len: int) -> Path:
    from headcam.ingest.cli import main

    rc = main(["videos", "--out", str(out), "--fps", f"{fps:g}", "--size", str(STORED_SIDE), "--clip-len",
               str(clip_len), "--val-every", "0", "--saliency", "none", "--stream-by", "file", "--shard-size",
               str(clip_len * 8), "--workers", str(workers), "--", *map(str, videos)])
    if rc != 0:
        raise SystemExit(f"ingest failed ({rc})")
    return out


def config(batch: int, workers: int, stride: int) -> LoaderConfig:
    return LoaderConfig(recipe_spec("mae"), batch_size=batch, size=SIZE, workers=workers, clip_frames=FRAMES,
                        clip_stride=stride)


def clips_per_second(batches, size_of) -> float:
    """Clips/s over an iterable of batches (``size_of(batch)``: its clips; called on every batch), timed from the
    first batch on, so worker start-up is left out."""
    n, start = 0, None
    for b in batches:
        size = size_of(b)
        if start is None:
            start = time.perf_counter()
            continue
        n += size
    return n / (time.perf_counter() - start) if n else float("nan")


def decode_window(source: str, pts: list[float]) -> list[torch.Tensor]:
    """Open ``source``, seek to the keyframe before ``pts[0]``, decode until every frame at ``pts`` is met;
    each resized to the stored size (short side 256, area filter) as uint8 3×H×W."""
    out: list[torch.Tensor] = []
    with av.open(source) as c:
        stream = c.streams.video[0]  # one decoding thread, as every worker of both rows (SlowFast's default)
        tb = float(stream.time_base)
        c.seek(int(pts[0] / tb), stream=stream, backward=True, any_frame=False)
        half = 0.5 / FPS
        for frame in c.decode(stream):
            t = frame.pts * tb
            if t < pts[len(out)] - half:
                continue
            h = STORED_SIDE
            w = round(frame.width * h / frame.height)
            rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
            out.append(torch.from_numpy(rgb).permute(2, 0, 1))
            if len(out) == len(pts):
                break
    if len(out) != len(pts):
        raise RuntimeError(f"{source}: found {len(out)} of the {len(pts)} frames at {pts[0]:.3f} s on")
    return out


class VideoClips(torch.utils.data.Dataset):
    """The alternative: each item is one clip window decoded from its source video."""

    def __init__(self, windows: list[list[dict]]):
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        w = self.windows[i]
        return decode_window(w[0]["source"], [f["pts"] for f in w])


class ClipViews:
    """The collate function: the same view maker, one draw per clip, as the shard loader's workers make them."""

    def __init__(self, seed: int):
        self.maker, self.seed, self.calls = ViewMaker(recipe_spec("mae"), size=SIZE), seed, 0

    def __call__(self, clips: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        torch.set_num_threads(1)
        self.calls += 1
        frames = [f for clip in clips for f in clip]
        rng = np.random.default_rng((self.seed, self.calls))
        return [self.maker.finish(v)[0].reshape(len(clips), FRAMES, 3, SIZE, SIZE)
                for v in self.maker.prepare(frames, [None] * len(frames), rng, clip_len=FRAMES)]


def video_epoch(windows: list[list[dict]], batch: int, workers: int, seed: int) -> float:
    """Clips/s decoding ``windows`` from their videos, in a DataLoader like the shard loader's."""
    loader = torch.utils.data.DataLoader(VideoClips(windows), batch_size=batch, num_workers=workers,
                                         collate_fn=ClipViews(seed))
    return clips_per_second(loader, lambda views: views[0].shape[0])


def run(short: bool, workers: int, rounds: int, batch: int) -> dict:
    n_videos, seconds = (2, 9) if short else (3, 60)
    videos = _make_videos(n_videos, seconds)
    rates: dict[str, list[float]] = {name: [] for name in [*STORAGES, "pyav"]}
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        loaders = {name: build_loader(ingest(videos, Path(tmp) / name, workers, fps, clip_len), "train",
                                      config(batch, workers, stride))
                   for name, (fps, clip_len, stride) in STORAGES.items()}
        for r in range(rounds):
            loads.append(os.getloadavg()[0])
            windows: list[list[dict]] = []  # the source-rate loader's clips: the PyAV row decodes the same ones
            for name, loader in loaders.items():
                loader.set_epoch(r)
                seen = windows if name == "30fps" else []
                rates[name].append(clips_per_second(
                    loader, lambda b, seen=seen: seen.extend(b.meta.clip_samples) or b.views[0].shape[0]))
            rates["pyav"].append(video_epoch(windows, batch, workers, seed=r))
            loads.append(os.getloadavg()[0])
            print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rates.items())
                  + f" clips/s; load {loads[-2]:.2f} {loads[-1]:.2f}", flush=True)
    best = {k: max(v) for k, v in rates.items()}
    return {"clips": {
        "recipe": f"mae, {FRAMES} frames at stride {STRIDE} of {FPS} fps video, {SIZE} px views",
        "source_videos": f"{n_videos} x {seconds} s, 640x480, 30 fps H.264, keyframe every 250 frames",
        "stored_30fps": "--fps 30 --clip-len 64, clip_stride=4", "stored_7.5fps": "--fps 7.5 --clip-len 20",
        "clips_per_epoch": {k: len(ld) * batch for k, ld in loaders.items()}, "batch": batch, "workers": workers,
        "rounds": rounds, "cpus": os.cpu_count(), "load_avg_1min": f"{min(loads):.2f}-{max(loads):.2f}",
        "shards_30fps_clips_s": best["30fps"], "shards_7.5fps_clips_s": best["7.5fps"],
        "pyav_decode_clips_s": best["pyav"], "ratio_shards_30fps_vs_pyav": best["30fps"] / best["pyav"],
        "ratio_shards_7.5fps_vs_pyav": best["7.5fps"] / best["pyav"]}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--short", action="store_true", help="small run (2 videos of 9 s, one round, batches of 2) for CI")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="DataLoader workers, both rows")
    p.add_argument("--rounds", type=int, default=2, help="epochs of each, alternated; the best is kept")
    p.add_argument("--batch", type=int, default=4, help="clips per batch")
    args = p.parse_args(argv)
    results = run(args.short, args.workers, 1 if args.short else args.rounds, min(args.batch, 2) if args.short
                  else args.batch)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
