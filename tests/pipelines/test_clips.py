"""Clips as samples (``LoaderConfig.clip_frames``): shapes, one draw per clip, frames at the stride, temporal
jitter, exact resume, ranks, too-short clips; on shards ingested from 30 fps videos made in the test."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from loader_configs import config

from headcam.console import UsageError
from headcam.ingest.cli import main as ingest
from headcam.pipelines.loader import LoaderConfig, build_loader

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))  # the video makers of the ingest tests
from fixtures_videos import h264  # noqa: E402

FPS, CLIP_LEN, SIZE = 10, 8, 32


@pytest.fixture(scope="module")
def clip_ds(tmp_path_factory) -> Path:
    """Two 4.5 s videos at 30 fps sampled at 10 fps: 45 frames each, cut into clips of 8 (the sixth holds 5);
    every 3rd clip of a video is val: train holds 8 clips of 8 frames in 4 shards, val 2 of 8 and 2 of 5."""
    root = tmp_path_factory.mktemp("clips")
    videos = [h264(root / f"v{i}.mp4", 4.5, size="96:72", filters=",hflip" * i) for i in range(2)]
    out = root / "ds"
    assert ingest(["videos", "--out", str(out), "--fps", str(FPS), "--size", str(SIZE), "--clip-len", str(CLIP_LEN),
                   "--seg-len", "100", "--val-every", "3", "--shard-size", "16", "--stream-by", "file",
                   "--saliency", "none", "--workers", "1", "--", *map(str, videos)]) == 0
    return out


def _clips(ds: Path, split: str) -> dict[int, list[int]]:
    """Clip id -> its frame indices, from the manifest."""
    out: dict[int, list[int]] = {}
    for r in pq.read_table(ds / "manifest.parquet").to_pylist():
        if r["split"] == split:
            out.setdefault(r["clip"], []).append(r["frame_index"])
    return out


def _starts(batches) -> dict[int, int]:
    return {c[0]["clip"]: c[0]["frame_index"] for b in batches for c in b.meta.clip_samples}


def test_clip_batch_shapes_and_labels(clip_ds):
    loader = build_loader(clip_ds, "train", config("simclr", batch_size=2, size=SIZE, n_views=2, clip_frames=4,
                                                   clip_stride=2))
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    for b in batches:
        assert [tuple(v.shape) for v in b.views] == [(2, 4, 3, SIZE, SIZE)] * 2 and b.views[0].dtype == torch.float32
        assert b.label.shape == (2,) and b.label.tolist() == [c[0]["segment"] for c in b.meta.clip_samples]
        assert b.keys == [k[0] for k in b.meta.clip_keys] and all(len(k) == 4 for k in b.meta.clip_keys)
        assert b.meta.samples == [c[0] for c in b.meta.clip_samples]
    assert loader.stats["short_clips"] == 0


def test_clip_frames_are_the_frame_loaders_views(clip_ds):
    """Evaluation's clip views are the frame views of the same frames: same decode, crop and normalisation."""
    clips = list(build_loader(clip_ds, "val", LoaderConfig.for_eval(size=SIZE, batch_size=3, clip_frames=4,
                                                                  clip_stride=2)))
    keys = [k for b in clips for clip in b.meta.clip_keys for k in clip]
    frames = list(build_loader(clip_ds, "val", LoaderConfig.for_eval(size=SIZE, batch_size=4, keys=keys)))
    by_key = {k: v for b in frames for k, v in zip(b.keys, b.views[0], strict=True)}
    assert len(keys) == len(by_key) == 4 * 2  # the two val clips of 8 frames
    for b in clips:
        for clip, views in zip(b.meta.clip_keys, b.views[0], strict=True):
            assert torch.equal(views, torch.stack([by_key[k] for k in clip]))


def test_one_draw_per_clip_and_view(clip_ds):
    cfg = config("simclr", batch_size=3, size=SIZE, n_views=2, clip_frames=4, record_views=True, seed=5)
    b = next(iter(build_loader(clip_ds, "train", cfg)))
    for record in b.meta.views:
        for name, p in record.params.items():
            assert p.shape[:2] == (3, 4), name
            assert torch.equal(p, p[:, :1].expand_as(p)), name  # the same crop, flip, colour for all T frames
        assert len({tuple(box) for box in record.params["box"][:, 0].tolist()}) == 3  # each clip draws its own
    assert not torch.equal(b.meta.views[0].params["box"], b.meta.views[1].params["box"])  # and each view
    # one draw on all frames: a clip of the same frame T times would give T equal views; real frames differ
    assert not torch.equal(b.views[0][:, 0], b.views[0][:, 1])


@pytest.mark.parametrize("stride", [1, 2])
def test_frames_are_consecutive_at_the_stride(clip_ds, stride):
    for train in (True, False):
        for b in build_loader(clip_ds, "train", config("simclr", batch_size=2, size=SIZE, train=train, clip_frames=3,
                                                       clip_stride=stride)):
            for clip in b.meta.clip_samples:
                assert len({f["clip"] for f in clip}) == 1 and len({f["source"] for f in clip}) == 1
                assert [f["frame_index"] - clip[0]["frame_index"] for f in clip] == [0, stride, 2 * stride]
                gaps = torch.tensor([f["pts"] for f in clip]).diff()
                assert torch.allclose(gaps, torch.full_like(gaps, stride / FPS), atol=1e-3)  # 30 fps source


def test_start_jitter_varies_with_seed_and_epoch_not_in_eval(clip_ds):
    first = {c: min(f) for c, f in _clips(clip_ds, "train").items()}

    def starts(train, seed, epoch):
        loader = build_loader(clip_ds, "train", config("simclr", batch_size=1, size=SIZE, train=train, seed=seed,
                                                       clip_frames=2, clip_stride=2, shuffle_buffer=0))
        loader.set_epoch(epoch)
        return _starts(loader)

    a = starts(True, 0, 0)
    assert all(first[c] <= s <= first[c] + 5 for c, s in a.items())  # 8 frames, span 3: starts 0..5
    assert a == starts(True, 0, 0)
    assert a != starts(True, 1, 0) and a != starts(True, 0, 1)
    assert len(set(s - first[c] for c, s in a.items())) > 1
    fixed = starts(False, 0, 0)
    assert fixed == starts(False, 1, 3) == {c: first[c] for c in fixed}
    assert len(fixed) == 8  # every clip once


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_equals_the_uninterrupted_stream(clip_ds, workers):
    loader = build_loader(clip_ds, "train", config("simclr", batch_size=1, size=SIZE, workers=workers, seed=2,
                                                   clip_frames=3, clip_stride=2))
    loader.set_epoch(1)
    full = list(loader)
    assert len(full) == 8
    for skip in (1, 3):
        loader.set_epoch(1, skip_batches=skip)
        tail = list(loader)
        assert [b.meta.clip_keys for b in tail] == [b.meta.clip_keys for b in full[skip:]]
        assert all(torch.equal(x.views[0], y.views[0]) for x, y in zip(tail, full[skip:], strict=True))


def test_two_ranks_read_disjoint_clips(clip_ds):
    loaders = [build_loader(clip_ds, "train", config("simclr", batch_size=1, size=SIZE, rank=r, world=2,
                                                     clip_frames=4)) for r in (0, 1)]
    assert len(loaders[0]) == len(loaders[1]) > 0
    clips = [Counter(c[0]["clip"] for b in ld for c in b.meta.clip_samples) for ld in loaders]
    assert not set(clips[0]) & set(clips[1])


def test_too_short_clips_counted_and_none_long_enough_is_a_usage_error(clip_ds, capsys):
    lengths = [len(f) for f in _clips(clip_ds, "val").values()]
    loader = build_loader(clip_ds, "val", LoaderConfig.for_eval(size=SIZE, batch_size=4, clip_frames=6))
    assert loader.stats["short_clips"] == sum(n < 6 for n in lengths) == 2
    assert "skipping 2 clip(s) of split 'val' shorter than 6 frames" in capsys.readouterr().err
    assert sum(len(b.keys) for b in loader) == sum(n >= 6 for n in lengths) == 2
    with pytest.raises(UsageError, match="no clip of split"):
        build_loader(clip_ds, "train", config("simclr", batch_size=1, size=SIZE, clip_frames=5, clip_stride=2))


def test_clip_settings_checked_at_once():
    with pytest.raises(UsageError, match="backend=torch"):
        config("simclr", batch_size=1, clip_frames=4, backend="dali")
    with pytest.raises(UsageError, match="clip_stride"):
        config("simclr", batch_size=1, clip_frames=4, clip_stride=0)
    with pytest.raises(UsageError, match="temporal_window"):
        config("simclr", batch_size=1, n_views=2, clip_frames=4, temporal_window=2)
