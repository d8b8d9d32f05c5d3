"""``headcam-ingest videos --label-from parent``: classes from folders, the set's own split or whole videos held
out, and --fps / --clip-len storing what a video recipe samples; on videos made in the test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fixtures_videos import h264

from headcam.ingest.cli import main
from headcam.ingest.labels import folder_labels
from headcam.pipelines.loader import LoaderConfig, build_loader

SMALL = ["--size", "32", "--saliency", "none", "--workers", "1", "--shard-size", "8"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 3 s, 30 fps video (90 frames): enough for mae_st's 64-frame window."""
    return h264(tmp_path_factory.mktemp("src") / "v.mp4", 3, size="64:48")


def _layout(root: Path, video: Path, paths: list[str]) -> Path:
    for rel in paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(video, root / rel)
    return root


def _ingest(src: Path, out: Path, *extra: str) -> int:
    return main(["videos", "--out", str(out), *SMALL, *extra, "--", str(src)])


def _rows(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


def test_parent_folders_are_classes_and_whole_videos_are_held_out(video, tmp_path):
    src = _layout(tmp_path / "set", video, [f"{c}/{v}.mp4" for c in ("dog", "ant", "cat") for v in ("a", "b", "c")])
    out = tmp_path / "ds"
    assert _ingest(src, out, "--label-from", "parent", "--fps", "2", "--clip-len", "2", "--val-every", "3") == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["classes"] == {"n_classes": 3, "names": ["ant", "cat", "dog"]}
    assert meta["params"]["label_from"] == "parent"
    rows = _rows(out)
    splits: dict[str, set[str]] = {}
    for r in rows:
        folder = Path(r["source"]).parent.name
        assert r["label"] == ["ant", "cat", "dog"].index(folder)
        splits.setdefault(r["source"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())  # a video is on one side only
    val = sorted(str(Path(p).relative_to(src)) for p, s in splits.items() if s == {"val"})
    assert val == ["ant/c.mp4", "cat/c.mp4", "dog/c.mp4"]  # every 3rd video of each class, by name
    clips: dict[int, set[str]] = {}
    for r in rows:
        clips.setdefault(r["clip"], set()).add(r["source"])
    assert all(len(s) == 1 for s in clips.values())


def test_train_and_val_folders_are_the_split(video, tmp_path):
    src = _layout(tmp_path / "set", video, ["train/b/1.mp4", "train/a/1.mp4", "train/a/2.mp4", "validation/b/9.mp4"])
    out = tmp_path / "ds"
    assert _ingest(src, out, "--label-from", "parent", "--fps", "1", "--val-every", "1") == 0
    got = {(str(Path(r["source"]).relative_to(src)), r["split"], r["label"]) for r in _rows(out)}
    assert got == {("train/a/1.mp4", "train", 0), ("train/a/2.mp4", "train", 0), ("train/b/1.mp4", "train", 1),
                   ("validation/b/9.mp4", "val", 1)}  # --val-every does not apply: the set's own split


def test_mixed_layout_is_a_one_line_usage_error(video, tmp_path, capsys):
    src = _layout(tmp_path / "set", video, ["train/a/1.mp4", "b/1.mp4"])
    assert _ingest(src, tmp_path / "ds", "--label-from", "parent") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "b/1.mp4 is not under a train/, val/ or test/ folder" in err


@pytest.mark.parametrize(("store", "read"), [(["--fps", "30", "--clip-len", "64"], (16, 4)),
                                             (["--fps", "7.5", "--clip-len", "16"], (16, 1))])
def test_fps_and_clip_len_store_the_mae_st_window(video, tmp_path, store, read):
    """mae_st: 16 frames at sampling rate 4 of 30 fps video: 4/30 s apart, 64 source frames per clip."""
    out = tmp_path / "ds"
    assert _ingest(_layout(tmp_path / "set", video, ["k/v.mp4"]), out, "--label-from", "parent", "--val-every", "0",
                   *store) == 0
    cfg = LoaderConfig.for_eval(size=32, batch_size=4, clip_frames=read[0], clip_stride=read[1])
    batches = list(build_loader(out, "train", cfg))
    clips = [c for b in batches for c in b.meta.clip_samples]
    assert clips and all(b.views[0].shape[1:3] == (16, 3) for b in batches)
    for clip in clips:
        pts = [f["pts"] for f in clip]
        assert all(abs(b - a - 4 / 30) < 1e-3 for a, b in zip(pts, pts[1:], strict=False))
        assert abs(pts[-1] + 4 / 30 - pts[0] - 64 / 30) < 1e-3  # the window spans 64 source frames


def test_val_tail_holds_out_each_class_s_last_videos():
    paths = [f"/set/{c}/{v}.mp4" for c in ("b", "a") for v in ("3", "1", "2", "4")]
    got = folder_labels(paths, val_every=0, val_tail=0.5)
    assert got.names == ["a", "b"]
    assert {p: v for p, v in got.videos.items() if v[1] == "val"} == {
        "/set/a/3.mp4": (0, "val"), "/set/a/4.mp4": (0, "val"), "/set/b/3.mp4": (1, "val"), "/set/b/4.mp4": (1, "val")}
    assert all(split == "train" for _, split in folder_labels(paths, val_every=0).videos.values())


def test_a_dataset_made_before_label_from_existed_is_still_found_done(video, tmp_path, capsys):
    """Temporal-segment labels (the default) leave ``label_from`` out of the saved parameters, so a dataset
    or staging area made before the option existed matches a re-run and is not re-ingested."""
    src = _layout(tmp_path / "set", video, ["a.mp4"])
    out = tmp_path / "ds"
    assert _ingest(src, out, "--fps", "2") == 0
    assert "label_from" not in json.loads((out / "dataset.json").read_text())["params"]
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    assert _ingest(src, out, "--fps", "2") == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == before
    capsys.readouterr()
    assert _ingest(src, out, "--fps", "2", "--label-from", "parent") == 2  # other parameters: refused
    assert "other inputs or parameters" in capsys.readouterr().err
