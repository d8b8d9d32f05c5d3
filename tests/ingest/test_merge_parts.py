"""``headcam-ingest merge OUT --part i/n`` then ``merge OUT``: parts that run at the same time give the dataset of a
one-process run byte for byte, free the staged bytes as they go (peak disk well under twice the dataset), resume
after a kill, and the final step refuses, naming them, while parts are unfinished."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fixtures_videos import two_streams

from headcam.ingest.cli import main

# real frames at 128 px (about 12 KB a JPEG, as SAYCam's are tens of KB), many small shards
PARAMS = ["--size", "128", "--fps", "3", "--seg-len", "6", "--clip-len", "6", "--val-every", "3", "--shard-size",
          "30", "--saliency", "spectral"]


@pytest.fixture(scope="module")
def inputs(media_dir, tmp_path_factory) -> Path:
    return two_streams(media_dir, tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def staged(inputs, tmp_path_factory) -> Path:
    """Both ingest parts staged, not merged: each test merges a copy."""
    out = tmp_path_factory.mktemp("staged") / "ds"
    for part in ("1/2", "2/2"):
        assert main(["videos", "--out", str(out), *PARAMS, "--workers", "2", "--part", part, str(inputs)]) == 0
    return out


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    """The same inputs ingested in one process (stage and merge)."""
    out = tmp_path_factory.mktemp("reference") / "ds"
    assert main(["videos", "--out", str(out), *PARAMS, "--workers", "2", str(inputs)]) == 0
    return out


def copy_of(staged: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ds"
    shutil.copytree(staged, out)
    return out


def disk_use(root: Path) -> int:
    """Bytes of disk allocated to the files under ``root`` (punched holes are not counted)."""
    total = 0
    for d, _, files in os.walk(root):
        for f in files:
            with contextlib.suppress(FileNotFoundError):  # renamed or deleted while we looked
                total += os.stat(os.path.join(d, f)).st_blocks * 512
    return total


def same_dataset(a: Path, b: Path) -> None:
    ta, tb = pq.read_table(a / "manifest.parquet"), pq.read_table(b / "manifest.parquet")
    assert ta.num_rows > 0 and ta.equals(tb)
    shards = sorted(p.name for p in a.glob("*.tar"))
    assert len(shards) >= 4 and shards == sorted(p.name for p in b.glob("*.tar"))
    for name in shards:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
        assert (a / name).with_suffix(".idx").read_bytes() == (b / name).with_suffix(".idx").read_bytes(), name
    assert (a / "failures.parquet").read_bytes() == (b / "failures.parquet").read_bytes()


def frames_intact(out: Path) -> None:
    """Every image and saliency member is a whole JPEG / PNG: none was read back from a freed (zeroed) range."""
    import tarfile

    n = 0
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                data = tar.extractfile(m).read()
                if m.name.endswith(".jpg"):
                    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", m.name
                    n += 1
                elif m.name.endswith(".sal.png"):
                    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[-8:-4] == b"IEND", m.name
    assert n == pq.read_table(out / "manifest.parquet").num_rows


def no_leftovers(out: Path) -> None:
    assert not (out / ".staging").exists()
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith((".tar", ".idx"))) == [
        "dataset.json", "failures.parquet", "manifest.parquet"]


def _merge_process(out: Path, *extra: str) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("headcam-ingest"))
    return subprocess.Popen([exe, "merge", str(out), "--workers", "1", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "HEADCAM_QUIET": "1"})


def test_parts_at_the_same_time_then_final_step_equal_one_process(staged, reference, tmp_path, capsys):
    out = copy_of(staged, tmp_path)
    staged_bytes = disk_use(out / ".staging")
    running = [_merge_process(out, "--part", f"{i}/3") for i in (1, 2)]
    assert main(["merge", str(out), "--part", "3/3", "--workers", "1"]) == 0
    for i, proc in enumerate(running, 1):
        said, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and f"merge part {i}/3" in said.decode(), err.decode()
    assert "merge part 3/3" in capsys.readouterr().out
    assert not (out / "dataset.json").exists()
    # every part freed what it moved: a few partly used 4 KiB blocks and the unit indexes are left
    assert disk_use(out / ".staging") < 0.15 * staged_bytes
    assert main(["merge", str(out), "--part", "2/3"]) == 0  # a finished part again: nothing to write
    assert "(0 written now)" in capsys.readouterr().out
    assert main(["merge", str(out)]) == 0
    same_dataset(reference, out)
    frames_intact(out)
    no_leftovers(out)


def test_final_step_refuses_while_parts_are_unfinished(staged, reference, tmp_path, capsys):
    out = copy_of(staged, tmp_path)
    assert main(["merge", str(out), "--part", "2/3", "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["merge", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "merge parts not finished: 1/3, 3/3" in err and len(err.splitlines()) == 1
    assert main(["merge", str(out), "--part", "1/2"]) == 2  # another count would write shards twice
    assert "parts of 3" in capsys.readouterr().err
    assert main(["merge", str(out), "--part", "4/3"]) == 2
    assert not (out / "dataset.json").exists()
    for part in ("3/3", "1/3"):
        assert main(["merge", str(out), "--part", part, "--workers", "1"]) == 0
    assert main(["merge", str(out)]) == 0
    same_dataset(reference, out)
    no_leftovers(out)


def _shard_records(journal: Path) -> int:
    try:
        return journal.read_text().count('"kind": "shard"')
    except FileNotFoundError:
        return 0


def test_part_killed_while_writing_resumes(staged, reference, tmp_path):
    out = copy_of(staged, tmp_path)
    proc = _merge_process(out, "--part", "1/2")
    journal = out / "journal.merge-1-of-2.jsonl"
    while proc.poll() is None and _shard_records(journal) < 2:
        time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert main(["merge", str(out), "--part", "1/2", "--workers", "1"]) == 0
    assert main(["merge", str(out), "--part", "2/2", "--workers", "1"]) == 0
    assert main(["merge", str(out)]) == 0
    same_dataset(reference, out)
    frames_intact(out)


def test_freed_staging_is_not_read_back_for_another_plan(staged, inputs, media_dir, tmp_path, capsys):
    out = copy_of(staged, tmp_path)
    assert main(["merge", str(out), "--part", "1/2", "--workers", "1"]) == 0
    more = tmp_path / "more"
    shutil.copytree(inputs, more, symlinks=True)
    (more / "child_c").mkdir()
    (more / "child_c" / "tree.avi").symlink_to(media_dir / "tree.avi")
    # the part's inputs as listed now include a new video: staged, it changes the plan of every shard
    assert main(["videos", "--out", str(out), *PARAMS, "--workers", "1", "--part", "2/2", str(more)]) == 0
    capsys.readouterr()
    assert main(["merge", str(out), "--part", "2/2", "--workers", "1"]) == 2
    assert "another plan" in capsys.readouterr().err


def test_peak_disk_of_a_merge_stays_near_the_dataset_size(staged, reference, tmp_path):
    """Measured: staging + output sampled every millisecond while one process merges (shards written in this
    process, so the true peak is at most one shard above the highest sample)."""
    out = copy_of(staged, tmp_path)
    staged_bytes = disk_use(out)
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], disk_use(out))
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        assert main(["merge", str(out), "--workers", "1"]) == 0
    finally:
        stop.set()
        sampler.join()
    size = disk_use(out)
    largest = max(disk_use_file(p) for p in out.glob("*.tar"))
    print(f"\nmerge peak disk (staging + output): {peak[0] / 2**20:.2f} MiB = {peak[0] / size:.2f} x the dataset "
          f"({size / 2**20:.2f} MiB, {len(list(out.glob('*.tar')))} shards); staged before: "
          f"{staged_bytes / 2**20:.2f} MiB; largest shard {largest / 2**20:.2f} MiB")
    assert peak[0] + largest < 1.3 * size
    same_dataset(reference, out)


def disk_use_file(path: Path) -> int:
    return path.stat().st_blocks * 512
