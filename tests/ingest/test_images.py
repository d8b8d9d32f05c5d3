"""``headcam-ingest images``: each real on-disk format, built tiny from real frames, into the shard contract."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from fixtures_images import (
    TOYBOX_IDS,
    TOYBOX_OBJECTS,
    TOYBOX_SECONDS,
    TOYBOX_TRANSFORMS,
    cifar_image,
    make_cifar10,
    make_folder,
    make_stl10,
    make_toybox,
    stl_image,
)
from media_frames import real_frames
from PIL import Image

from headcam.ingest.cli import main as cli_main
from headcam.ingest.image_formats.toybox import CATEGORIES, iid_split
from headcam.shards import open_dataset


def ingest(fmt: str, src: Path, out: Path, *extra: str) -> int:
    """``headcam-ingest images`` through the real CLI entry (user errors come back as exit code 2)."""
    return cli_main(["images", "--format", fmt, str(src), "--out", str(out), *extra])


def usage_error(capsys, *args) -> str:
    """Run ingest expecting a user error: exit 2 and one line on stderr, which is returned."""
    capsys.readouterr()
    assert ingest(*args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("headcam-ingest: error:") and "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def frames():
    return real_frames()


def manifest(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest.parquet").to_pylist()


def decode_jpg(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.float64)


def read_plain(out: Path) -> dict[str, dict]:
    """Every sample of every shard through plain webdataset (no headcam code)."""
    samples = {}
    for shard in sorted(out.glob("*.tar")):
        for s in wds.WebDataset(str(shard), shardshuffle=False):
            samples[s["__key__"]] = s
    return samples


def check_contract(out: Path, expected_counts: dict[str, int]) -> list[dict]:
    """Shards, manifest and dataset.json agree, read with plain tools; returns the manifest rows."""
    ds = open_dataset(out)
    assert ds.check() == []
    assert ds.kind == "images"
    rows = manifest(out)
    assert Counter(r["split"] for r in rows) == expected_counts
    assert json.loads((out / "dataset.json").read_text())["counts"] == expected_counts
    samples = read_plain(out)
    assert set(samples) == {r["key"] for r in rows}
    for r in rows:
        s = samples[r["key"]]
        assert int(s["cls"]) == r["label"]
        assert "." not in r["key"]
        img = Image.open(io.BytesIO(s["jpg"]))
        assert img.size == (r["width"], r["height"])
        assert ("sal.png" in s) == r["has_saliency"]
        assert json.loads(s["json"])["source"] == r["source"]
    return rows


def test_folder_with_splits_keeps_splits_and_records_corrupt(tmp_path, frames, capsys):
    exp = make_folder(tmp_path / "src", frames)
    out = tmp_path / "out"
    assert ingest("folder", tmp_path / "src", out, "--shard-size", "10") == 3
    rows = check_contract(out, exp.counts)
    ds = open_dataset(out)
    assert ds.class_names == exp.class_names == ["city", "nasa", "tree"]
    for split, by_label in exp.labels.items():
        assert Counter(r["label"] for r in rows if r["split"] == split) == by_label
    assert all(min(r["width"], r["height"]) == 64 for r in rows)  # native: --size 256 never upscales a folder
    assert all(r["has_saliency"] for r in rows)
    assert len(ds.shards("train")) == -(-exp.counts["train"] // 10)
    fails = ds.failures().to_pylist()
    assert [f["path"] for f in fails] == exp.bad and fails[0]["stage"] == "decode"
    # a source file with a non-ASCII name and spaces made it, with its own label
    assert any(r["source"].endswith("é.png") for r in rows)
    assert "1 failed" in capsys.readouterr().out
    # a finished dataset is not redone; other parameters are refused
    assert ingest("folder", tmp_path / "src", out, "--shard-size", "10") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert "other inputs or parameters" in usage_error(capsys, "folder", tmp_path / "src", out, "--shard-size", "7")
    assert "other inputs or parameters" in usage_error(capsys, "folder", tmp_path / "src" / "train", out,
                                                       "--shard-size", "10")
    # headcam-ingest inspect agrees that shards and manifest match
    assert cli_main(["inspect", str(out)]) == 0


def test_folder_without_splits_is_all_train_and_sizes_apply(tmp_path, frames):
    exp = make_folder(tmp_path / "src", frames[:12] + frames[24:], with_splits=False)
    out = tmp_path / "out"
    assert ingest("folder", tmp_path / "src", out, "--size", "40", "--crop", "32", "--saliency", "none") == 3
    rows = check_contract(out, {"train": sum(exp.counts.values())})
    assert open_dataset(out).class_names == ["city", "tree"]
    assert {(r["width"], r["height"]) for r in rows} == {(32, 32)}
    assert not any(r["has_saliency"] for r in rows)


def test_folder_is_not_upscaled_but_large_images_are_downscaled(tmp_path, frames, capsys):
    """Short side = min(native, --size): 32 px images stay 32 px, a 64 px one goes down to 48."""
    src = tmp_path / "src"
    for i, (vi, rgb) in enumerate(frames[:6]):
        (src / f"c{vi}").mkdir(parents=True, exist_ok=True)
        side = 32 if i % 3 else 64  # PNG and JPEG, small and large
        Image.fromarray(rgb).resize((side * rgb.shape[1] // rgb.shape[0], side)).save(
            src / f"c{vi}" / f"{i}.{'png' if i % 2 else 'jpg'}")
    out = tmp_path / "out"
    assert ingest("folder", src, out, "--size", "48", "--saliency", "none") == 0
    shorts = {Path(r["source"]).stem: min(r["width"], r["height"]) for r in check_contract(out, {"train": 6})}
    assert shorts == {str(i): 32 if i % 3 else 48 for i in range(6)}
    # --upscale restores the old rule; --help says which is the default
    assert ingest("folder", src, tmp_path / "up", "--size", "48", "--saliency", "none", "--upscale") == 0
    assert {min(r["width"], r["height"]) for r in manifest(tmp_path / "up")} == {48}
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli_main(["images", "--help"])
    assert "min(native, SIZE)" in " ".join(capsys.readouterr().out.split())


def test_fast_decode_equals_pillow_and_keeps_exif_and_truncation(tmp_path, frames):
    """OpenCV's fast path gives Pillow's pixels exactly; EXIF orientation and truncation still behave."""
    from PIL import ImageOps

    from headcam.ingest.image_formats.folder import _plain_8bit, read_rgb

    def pillow(path: Path) -> np.ndarray:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))

    rgb = frames[0][1]
    cases = {"a.png": {}, "grey.png": {}, "rgba.png": {}, "a.jpg": {"quality": 90}, "b.jpg": {"subsampling": 0},
             "c.jpg": {"progressive": True}}
    for name, kw in cases.items():
        img = Image.fromarray(rgb)
        img = img.convert("L") if name.startswith("grey") else img.convert("RGBA") if name.startswith("rgba") else img
        img.save(tmp_path / name, **kw)
        assert _plain_8bit((tmp_path / name).read_bytes()), name  # took the fast path
        assert np.array_equal(read_rgb(tmp_path / name), pillow(tmp_path / name)), name
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif)
    assert read_rgb(tmp_path / "rot.jpg").shape == (rgb.shape[1], rgb.shape[0], 3)
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "a.jpg").read_bytes()[:300])
    with pytest.raises(OSError):
        read_rgb(tmp_path / "cut.jpg")


def test_cifar10_native_size_labels_and_pixels(tmp_path, frames):
    exp = make_cifar10(tmp_path / "src", frames)
    out = tmp_path / "out"
    assert ingest("cifar10", tmp_path / "src", out, "--shard-size", "8") == 0
    rows = check_contract(out, exp.counts)
    ds = open_dataset(out)
    assert ds.class_names == exp.class_names and ds.n_classes == 10
    for split in ("train", "test"):
        assert Counter(r["label"] for r in rows if r["split"] == split) == exp.labels[split]
    assert {(r["width"], r["height"]) for r in rows} == {(32, 32)}
    samples = read_plain(out)
    for key in ("cifar10_train_000000", "cifar10_train_000026", "cifar10_test_000004"):
        split, index = key.split("_")[1], int(key.split("_")[2])
        err = np.abs(decode_jpg(samples[key]["jpg"]) - cifar_image(tmp_path / "src", split, index)).mean()
        assert err < 6, (key, err)
    # --shards: each split as N shards of near-equal size (27 train -> 7 7 7 6, 9 test -> 3 2 2 2)
    out4 = tmp_path / "out4"
    assert ingest("cifar10", tmp_path / "src", out4, "--shards", "4") == 0
    sizes = Counter(r["shard"] for r in check_contract(out4, exp.counts))
    assert [sizes[f"train-{i:06d}.tar"] for i in range(4)] == [7, 7, 7, 6]
    assert [sizes[f"test-{i:06d}.tar"] for i in range(4)] == [3, 2, 2, 2]
    # the write order is a seeded shuffle, not the source order
    train_keys = [r["key"] for r in rows if r["split"] == "train"]
    assert train_keys != sorted(train_keys)


def test_stl10_unlabeled_and_column_major_planes(tmp_path, frames):
    exp = make_stl10(tmp_path / "src", frames)
    out = tmp_path / "out"
    assert ingest("stl10", tmp_path / "src" / "stl10_binary", out) == 0
    rows = check_contract(out, exp.counts)
    assert open_dataset(out).class_names == exp.class_names
    for split in ("train", "test", "unlabeled"):
        assert Counter(r["label"] for r in rows if r["split"] == split) == exp.labels[split]
    samples = read_plain(out)
    for split, index in (("train", 3), ("unlabeled", 1)):
        got = decode_jpg(samples[f"stl10_{split}_{index:06d}"]["jpg"])
        truth = stl_image(tmp_path / "src", split, index).astype(np.float64)
        assert np.abs(got - truth).mean() < 4
        assert np.abs(got - truth.transpose(1, 0, 2)).mean() > 3 * np.abs(got - truth).mean()


@pytest.fixture(scope="module")
def toybox(tmp_path_factory, frames):
    root = tmp_path_factory.mktemp("toybox")
    return root / "src", make_toybox(root / "src", frames)


def test_toybox_frames_labels_and_both_splits(toybox, tmp_path, capsys):
    (src, exp), out = toybox, tmp_path / "out"
    assert ingest("toybox", src, out, "--shard-size", "20") == 3
    n = len(TOYBOX_OBJECTS) * len(TOYBOX_IDS) * len(TOYBOX_TRANSFORMS) * TOYBOX_SECONDS
    assert exp.counts == {"all": n}
    rows = check_contract(out, {"all": n})
    ds = open_dataset(out)
    assert ds.class_names == list(CATEGORIES) and len(CATEGORIES) == 12
    assert {(r["width"], r["height"]) for r in rows} == {(224, 224)}  # short side 256, crop 224
    for r in rows:
        assert r["label"] == CATEGORIES.index(r["category"])
        assert r["split_exemplar"] == ("test" if r["object"] >= 28 else "train")
        assert r["transform"] in TOYBOX_TRANSFORMS
    # every category holds out its objects 28-30 and trains on the others
    for cat in TOYBOX_OBJECTS:
        held = {r["object"] for r in rows if r["category"] == cat and r["split_exemplar"] == "test"}
        assert held == {28, 30}
    # 1 fps by timestamp: frames at 0, 1, 2 s of each 3 s clip
    per_clip = Counter((r["category"], r["object"], r["transform"]) for r in rows)
    assert set(per_clip.values()) == {TOYBOX_SECONDS}
    assert sorted({r["pts"] for r in rows}) == pytest.approx([0.0, 1.0, 2.0], abs=0.01)
    assert Counter(r["split_iid"] for r in rows) == {"train": n // 2, "test": n // 2}
    fails = ds.failures().to_pylist()
    assert [f["path"] for f in fails] == exp.bad
    assert not any("broken" in r["key"] for r in rows)
    # the crop is the centre one moved 16 px up (SPEC §7): compare with the decoded frame at 1 s
    key = "toybox_cup_28_rxplus_001"
    src_path = next(r["source"] for r in rows if r["key"] == key)
    with av.open(src_path) as c:
        frame = next(f for f in c.decode(video=0) if f.time >= 1.0 - 1e-6)
    big = np.asarray(frame.to_image().resize((384, 256), Image.BICUBIC)).astype(np.float64)
    got = decode_jpg(read_plain(out)[key]["jpg"])
    top = (256 - 224) // 2
    err_shifted = np.abs(got - big[top - 16:top - 16 + 224, 80:304]).mean()
    err_centred = np.abs(got - big[top:top + 224, 80:304]).mean()
    assert err_shifted < 8 and err_shifted < err_centred / 2, (err_shifted, err_centred)
    # re-ingesting with the same seed gives the same keys and iid split
    out2 = tmp_path / "out2"
    assert ingest("toybox", src, out2, "--shard-size", "20", "--workers", "2") == 3
    def comparable(rs):
        return sorted(({k: v for k, v in r.items() if k != "stream_time"} for r in rs), key=lambda r: r["key"])

    assert comparable(manifest(out2)) == comparable(rows)
    assert [p.read_bytes() for p in sorted(out.glob("*.tar"))] == [p.read_bytes() for p in sorted(out2.glob("*.tar"))]


def test_iid_split_is_seeded_half_independent_of_order():
    keys = [f"k{i:04d}" for i in range(1001)]
    a, b, c = iid_split(keys, 0), iid_split(keys, 0), iid_split(keys, 1)
    assert a == b and a != c
    assert Counter(a) == {"train": 501, "test": 500}
    shuffled = keys[::-1]
    assert dict(zip(shuffled, iid_split(shuffled, 0), strict=True)) == dict(zip(keys, a, strict=True))


def test_killed_run_leftovers_are_replaced(tmp_path, frames):
    make_cifar10(tmp_path / "src", frames)
    out = tmp_path / "out"
    out.mkdir()
    (out / "train-000007.tar").write_bytes(b"half a shard")
    (out / "train-000000.tar.tmp-123").write_bytes(b"torn")
    (out / "manifest.parquet").write_bytes(b"old")
    assert ingest("cifar10", tmp_path / "src", out, "--shard-size", "100") == 0
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "failures.parquet", "manifest.parquet",
                                                     "test-000000.idx", "test-000000.tar",
                                                     "train-000000.idx", "train-000000.tar"]
    assert open_dataset(out).check() == []


def test_run_killed_after_completing_is_tidied_by_the_next(tmp_path, frames, capsys):
    """Killed between dataset.json and deleting .staging / journal: the dataset is complete; a re-run
    says so and deletes the leftovers."""
    make_cifar10(tmp_path / "src", frames)
    out = tmp_path / "out"
    assert ingest("cifar10", tmp_path / "src", out) == 0
    (out / ".staging").mkdir()
    (out / ".staging" / "u000000.tar").write_bytes(b"staged")
    (out / "journal.jsonl").write_text("{}\n")
    dataset = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "journal.jsonl"}
    capsys.readouterr()
    assert ingest("cifar10", tmp_path / "src", out) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.iterdir()} == dataset  # leftovers gone, the dataset untouched


def test_user_errors_and_nothing_done(tmp_path, frames, capsys):
    make_cifar10(tmp_path / "cifar", frames)
    assert "not a CIFAR-10" in usage_error(capsys, "cifar10", tmp_path, tmp_path / "o1")
    assert "not an STL-10" in usage_error(capsys, "stl10", tmp_path / "cifar", tmp_path / "o2")
    assert "no such file" in usage_error(capsys, "folder", tmp_path / "missing", tmp_path / "o3")
    assert "--crop" in usage_error(capsys, "folder", tmp_path, tmp_path / "o4", "--size", "32", "--crop", "64")
    assert "--fps" in usage_error(capsys, "cifar10", tmp_path / "cifar", tmp_path / "o4", "--fps", "2")
    assert "not both" in usage_error(capsys, "cifar10", tmp_path / "cifar", tmp_path / "o4", "--shards", "2",
                                     "--shard-size", "5")
    flat = tmp_path / "flat"
    (flat / "train" / "cls").mkdir(parents=True)
    (flat / "val").mkdir()
    Image.fromarray(frames[0][1]).save(flat / "train" / "cls" / "a.png")
    Image.fromarray(frames[1][1]).save(flat / "val" / "b.png")
    assert "no class folders" in usage_error(capsys, "folder", flat, tmp_path / "o5")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert "cannot write" in usage_error(capsys, "cifar10", tmp_path / "cifar", blocker / "out")
    # every image corrupt: exit 1, failures recorded, no dataset.json
    bad = tmp_path / "bad" / "cls"
    bad.mkdir(parents=True)
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_bytes(b"\x89PNG junk")
    out = tmp_path / "o6"
    assert ingest("folder", tmp_path / "bad", out) == 1
    assert not (out / "dataset.json").exists()
    assert len(pq.read_table(out / "failures.parquet")) == 2


def test_shards_read_by_plain_tarfile(tmp_path, frames):
    exp = make_stl10(tmp_path / "src", frames[:8])
    out = tmp_path / "out"
    assert ingest("stl10", tmp_path / "src", out, "--quality", "80") == 0
    members = []
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members += tar.getnames()
    exts = Counter(m.split(".", 1)[1] for m in members)
    n = sum(exp.counts.values())
    assert exts == {"jpg": n, "sal.png": n, "cls": n, "lbl": n, "json": n}


def _run_cli_process(fmt: str, src: Path, out: Path, *extra: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "headcam-ingest"  # the installed console script
    return subprocess.Popen([str(exe), "images", "--format", fmt, str(src), "--out", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HEADCAM_QUIET": "1"})


def test_sigkill_mid_run_resumes_to_the_same_dataset(tmp_path, frames, capsys):
    make_cifar10(tmp_path / "src", frames * 20)  # 720 images
    opts = ("--shard-size", "30", "--size", "64")
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert ingest("cifar10", tmp_path / "src", clean, *opts) == 0
    proc = _run_cli_process("cifar10", tmp_path / "src", killed, *opts)
    journal = killed / "journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count('"kind": "shard"') >= 3:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "dataset.json").exists(), "killed too late: the run had finished"
    with pytest.raises(Exception, match="not a finished"):
        open_dataset(killed)
    assert "other inputs or parameters" in usage_error(capsys, "cifar10", tmp_path / "src", killed, "--seed", "1",
                                                       *opts)
    assert ingest("cifar10", tmp_path / "src", killed, *opts) == 0
    assert not journal.exists()
    nan_free = ["pts", "stream_time"]  # all NaN for images, and NaN != NaN
    resumed, whole = (pq.read_table(d / "manifest.parquet").drop_columns(nan_free) for d in (killed, clean))
    assert resumed.equals(whole)
    names = sorted(p.name for p in clean.glob("*-*.*"))
    assert names == sorted(p.name for p in killed.glob("*-*.*"))
    assert all((clean / n).read_bytes() == (killed / n).read_bytes() for n in names)
    assert open_dataset(killed).check() == []
