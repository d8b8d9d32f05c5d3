"""``headcam-ingest videos`` end to end on the shared real media: counts, labels, splits, readers."""

from __future__ import annotations

import io
import json
import math
import tarfile
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from headcam.ingest.cli import main
from headcam.shards.dataset import open_dataset

FAST = ["--size", "64", "--fps", "2", "--seg-len", "4", "--clip-len", "4", "--val-every", "2", "--workers", "2",
        "--shard-size", "40"]


def ingest(inputs: list[str | Path], out: Path, *extra: str) -> int:
    return main(["videos", "--out", str(out), *FAST, *extra, "--", *map(str, inputs)])


def manifest(out: Path):
    return pq.read_table(out / "manifest.parquet")


@pytest.fixture(scope="module")
def media_ds(media_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("media") / "ds"
    assert ingest([media_dir], out, "--fps", "5", "--stream-by", "file") == 0
    return out


def test_frame_counts_match_duration_times_fps(media_ds, media_dir):
    counts = Counter(manifest(media_ds).column("source").to_pylist())
    assert len(counts) == 3
    for path in sorted(media_dir.iterdir()):
        with av.open(str(path)) as c:
            duration = c.duration / 1e6  # the container's own duration, independent of our decoding
        assert abs(counts[str(path)] - duration * 5) <= 1, (path.name, counts[str(path)], duration * 5)


def test_two_stream_file_uses_the_larger_stream_and_records_it(media_ds):
    meta = json.loads((media_ds / "dataset.json").read_text())
    src = {Path(s["path"]).name: s for s in meta["sources"]}
    assert src["nasa_13013.mp4"]["stream_index"] == 3 and src["nasa_13013.mp4"]["n_video_streams"] == 2
    assert src["cityCC0.mpg"]["stream_index"] == 0
    t = manifest(media_ds).to_pylist()
    nasa = {(r["width"], r["height"]) for r in t if r["source"].endswith("nasa_13013.mp4")}
    assert nasa == {(114, 64)}  # 480x270 scaled to short side 64 (the 320x180 stream would also give 114x64 ...
    first = next(r for r in t if r["source"].endswith("nasa_13013.mp4") and r["frame_index"] == 1)
    assert first["pts"] == pytest.approx(6 / 29.97, abs=1e-6)  # ... but the 25 fps one would give 0.2 exactly


def test_segments_clips_and_held_out_split(media_ds):
    ds = open_dataset(media_ds)
    meta = ds.meta
    rows = ds.manifest.to_pylist()
    ranges = meta["classes"]["ranges"]
    assert [r["first_class"] for r in ranges] == [0, ranges[0]["n_classes"], ranges[0]["n_classes"] + ranges[1][
        "n_classes"]]  # segments numbered globally, stream after stream
    assert ds.n_classes == sum(r["n_classes"] for r in ranges) == len({r["label"] for r in rows})
    for r in rows:
        rng = next(g for g in ranges if g["stream"] == r["stream"])
        assert r["label"] == rng["first_class"] + math.floor(r["stream_time"] / 4.0)
    clips: dict[int, list[dict]] = {}
    for r in rows:
        clips.setdefault(r["clip"], []).append(r)
    for members in clips.values():
        assert len(members) <= 4 and len({(m["split"], m["shard"], m["label"], m["source"]) for m in members}) == 1
        assert [m["frame_index"] for m in members] == list(range(members[0]["frame_index"],
                                                                 members[0]["frame_index"] + len(members)))
    assert {"train", "val"} == set(ds.splits)
    by_seg: dict[int, list[tuple[float, str]]] = {}
    for members in clips.values():
        by_seg.setdefault(members[0]["label"], []).append((members[0]["stream_time"], members[0]["split"]))
    for seg in by_seg.values():  # every 2nd clip of each segment, in time order, is held out
        assert [s for _, s in sorted(seg)] == ["val" if i % 2 else "train" for i in range(len(seg))]
    order = [r["clip"] for r in rows if r["split"] == "train"]
    assert order != sorted(order)  # clips are shuffled globally
    assert min(ds.shard_counts[n] for n in ds.shard_counts) > 0 and len(ds.shards("train")) >= 2
    assert ds.check() == []


def test_read_with_plain_tarfile_webdataset_and_pyarrow(media_ds):
    import webdataset as wds

    table = pq.read_table(media_ds / "manifest.parquet")
    labels = dict(zip(table.column("key").to_pylist(), table.column("label").to_pylist(), strict=True))
    shards = sorted(str(p) for p in media_ds.glob("train-*.tar"))
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
        key = names[0].split(".", 1)[0]
        assert [n for n in names if n.startswith(key + ".")] == [f"{key}.{e}" for e in ("jpg", "sal.png", "cls", "lbl",
                                                                                        "json")]
        img = Image.open(io.BytesIO(tar.extractfile(f"{key}.jpg").read()))
        assert min(img.size) == 64
        assert int(tar.extractfile(f"{key}.cls").read()) == labels[key]
        assert int.from_bytes(tar.extractfile(f"{key}.lbl").read(), "little", signed=True) == labels[key]
    seen = 0
    for s in wds.WebDataset(shards, shardshuffle=False).decode("pil"):
        assert s["cls"] == labels[s["__key__"]] and s["json"]["segment"] == labels[s["__key__"]]
        assert max(s["sal.png"].size) == 64 and min(s["jpg"].size) == 64
        seen += 1
    assert seen == sum(1 for s in table.column("split").to_pylist() if s == "train")


def test_edge_files_ingested_or_reported(edge_dir, tmp_path):
    out = tmp_path / "edge"
    files = sorted(edge_dir.iterdir())
    assert ingest(files, out, "--stream-by", "file") == 3
    fails = pq.read_table(out / "failures.parquet").to_pylist()
    assert [(Path(f["path"]).name, f["stage"], f["message"]) for f in fails] == [("audio_only.mp3", "probe",
                                                                                 "no video stream")]
    rows = manifest(out).to_pylist()
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(Path(r["source"]).name, []).append(r)
    assert set(by_name) == {f.name for f in files} - {"audio_only.mp3"}  # HEVC, AV1, HDR, MPEG-4 all decode
    rot = by_name["nasa_13013_rotated.mp4"][0]
    assert (rot["width"], rot["height"]) == (64, 114)  # display matrix applied: portrait
    nz = by_name["test_non_zero_start.mp4"]
    assert min(r["pts"] for r in nz) == 0.0 and len(nz) == 1  # 0.4 s at 2 fps, from pts 0 (file starts at 8.33 s)


def test_rotation_direction_matches_ffmpeg(edge_dir, tmp_path):
    import subprocess

    import imageio_ffmpeg

    src = edge_dir / "nasa_13013_rotated.mp4"
    out = tmp_path / "rot"
    assert main(["videos", "--out", str(out), "--size", "270", "--fps", "1", "--quality", "100", "--saliency", "none",
                 "--workers", "1", str(src)]) == 0
    with tarfile.open(next(out.glob("train-*.tar"))) as tar:
        ours = np.asarray(Image.open(io.BytesIO(tar.extractfile(tar.getnames()[0]).read())), dtype=float)
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(src), "-frames:v", "1", "-f",
                          "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    ref = np.frombuffer(raw, np.uint8).reshape(480, 270, 3).astype(float)  # ffmpeg autorotates
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).mean() < 4 < np.abs(ours - ref[::-1, ::-1]).mean()


def test_extra_rotation_and_crop(media_dir, tmp_path):
    out = tmp_path / "rc"
    src = media_dir / "cityCC0.mpg"
    assert ingest([src], out, "--rotate", "90", "--crop", "48", "--fps", "1") == 0
    rows = manifest(out).to_pylist()
    assert {(r["width"], r["height"]) for r in rows} == {(48, 48)}
    out2 = tmp_path / "r"
    assert ingest([src], out2, "--rotate", "90", "--fps", "1") == 0
    assert {(r["width"], r["height"]) for r in manifest(out2).to_pylist()} == {(64, 114)}


def test_decord_gives_same_counts_as_pyav(media_ds, media_dir, tmp_path):
    out = tmp_path / "decord"
    assert ingest([media_dir], out, "--fps", "5", "--stream-by", "file", "--decoder", "decord") == 0
    a = Counter(manifest(media_ds).column("source").to_pylist())
    b = Counter(manifest(out).column("source").to_pylist())
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1 for k in a)


def test_decord_failure_is_reported_in_one_line(edge_dir, tmp_path):
    out = tmp_path / "av1"
    assert ingest([edge_dir / "av1_video.mkv"], out, "--decoder", "decord") == 1  # decord's FFmpeg lacks AV1
    (fail,) = pq.read_table(out / "failures.parquet").to_pylist()
    assert fail["stage"] == "decode" and fail["message"].startswith("decord could not read the file: ")
    assert "\n" not in fail["message"] and ".cc:" not in fail["message"]


def test_rerun_of_finished_dataset_does_nothing(media_ds, media_dir, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in media_ds.iterdir()}
    assert ingest([media_dir], media_ds, "--fps", "5", "--stream-by", "file") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in media_ds.iterdir()} == before


def test_inspect_reports_and_detects_disagreement(media_ds, tmp_path, capsys):
    import shutil

    assert main(["inspect", str(media_ds)]) == 0
    text = capsys.readouterr().out
    assert "train:" in text and "val:" in text and "consistent" in text and "failures: 0" in text
    broken = tmp_path / "broken"
    shutil.copytree(media_ds, broken)
    next(broken.glob("val-*.tar")).unlink()
    assert main(["inspect", str(broken)]) == 1
    assert "INCONSISTENT" in capsys.readouterr().out


def test_dali_reads_shards_with_index_and_int64_labels(media_ds):
    """DALI's own webdataset reader (CPU, no GPU needed) with our .idx files and the int64 ``lbl`` member."""
    from nvidia.dali import fn, pipeline_def, types

    table = pq.read_table(media_ds / "manifest.parquet")
    train = [(s, lb) for s, lb in zip(table.column("split").to_pylist(), table.column("label").to_pylist(),
                                      strict=True) if s == "train"]
    tars = sorted(str(p) for p in media_ds.glob("train-*.tar"))

    @pipeline_def(batch_size=len(train), num_threads=1, device_id=None)
    def read():
        jpg, lbl = fn.readers.webdataset(paths=tars, index_paths=[t[:-4] + ".idx" for t in tars], ext=["jpg", "lbl"],
                                         dtypes=[types.UINT8, types.INT64], missing_component_behavior="error",
                                         random_shuffle=False, name="Reader")
        return fn.decoders.image(jpg, device="cpu"), lbl

    pipe = read()
    pipe.build()
    assert pipe.epoch_size("Reader") == len(train)
    images, labels = pipe.run()
    got = [int(np.array(labels.at(i)).reshape(-1)[0]) for i in range(len(train))]
    assert np.array(labels.at(0)).dtype == np.int64
    assert got == [lb for _, lb in train]  # manifest order = shard order, then order inside the shard
    assert min(images.at(0).shape[:2]) == 64


def test_default_parameters_on_the_media(media_dir, tmp_path):
    """The defaults (5 fps, short side 256, 288 s segments, clips of 8, every 10th clip held out)."""
    out = tmp_path / "defaults"
    assert main(["videos", "--out", str(out), "--workers", "2", str(media_dir)]) == 0
    ds = open_dataset(out)
    rows = ds.manifest.to_pylist()
    assert ds.n_classes == 1 and {r["label"] for r in rows} == {0}  # one stream of 50 s < 288 s
    assert {min(r["width"], r["height"]) for r in rows} == {256}
    assert {r["stream"] for r in rows} == {str(media_dir)}
    n_clips = len({r["clip"] for r in rows})
    n_val = len({r["clip"] for r in rows if r["split"] == "val"})
    assert n_clips == ds.meta["n_clips"] and n_val == n_clips // 10
    assert len(ds.shards("train")) == 2 and len(ds.shards("val")) == 2 and ds.check() == []
    sal = {r["key"] for r in rows if r["has_saliency"]}
    assert len(sal) == len(rows)
    with tarfile.open(ds.shards("val")[0]) as tar:
        name = next(n for n in tar.getnames() if n.endswith(".sal.png"))
        m = Image.open(io.BytesIO(tar.extractfile(name).read()))
        assert m.mode == "L" and max(m.size) == 64 and np.asarray(m).max() == 255


def test_inspect_names_classes_and_unlabelled(tiny_dataset, tmp_path, capsys):
    """On an image dataset (the shared fixture) with one sample relabelled -1 (unlabelled)."""
    import shutil

    import pyarrow as pa

    ds = tmp_path / "tiny"
    shutil.copytree(tiny_dataset, ds)
    table = pq.read_table(ds / "manifest.parquet")
    labels = table.column("label").to_pylist()
    labels[0] = -1
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels, pa.int64())),
                   ds / "manifest.parquet")
    assert main(["inspect", str(ds)]) == 0
    out = capsys.readouterr().out
    assert "city" in out and "tree" in out and "(unlabelled)" in out and "consistent" in out


def test_val_tail_holds_out_the_end_of_every_segment(media_dir, tmp_path):
    """--val-tail 0.5: per segment, the held-out frames are one time range after every training frame of it."""
    out = tmp_path / "tail"
    assert ingest([media_dir], out, "--seg-len", "4", "--clip-len", "2", "--val-tail", "0.5",
                  "--stream-by", "one") == 0
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    segments = {r["label"] for r in rows}
    split_segments = 0
    for seg in segments:
        train = [r["stream_time"] for r in rows if r["label"] == seg and r["split"] == "train"]
        val = [r["stream_time"] for r in rows if r["label"] == seg and r["split"] == "val"]
        if train and val:
            split_segments += 1
            assert max(train) < min(val)
            assert abs(len(val) - len(train)) <= 2 * 2  # about half, whole clips of 2 frames
    assert split_segments >= len(segments) - 1
    assert ingest([media_dir], tmp_path / "bad", "--val-tail", "1.0") == 2
