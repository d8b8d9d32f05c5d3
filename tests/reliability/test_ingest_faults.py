"""Fault injection on the real ``headcam-ingest`` CLI: kills at random points, a full disk.

Every trial must end in the dataset a clean run gives (manifest and shard bytes), with no temp
files or staging left behind. Videos, image folders and CIFAR-10 go through the same engine and
the same trials. CI runs a short form; ``-m slow`` runs many trials.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from media_frames import real_frames

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))  # the image-dataset builders of the ingest tests
from fixtures_images import make_cifar10, make_folder  # noqa: E402
from fixtures_videos import h264  # noqa: E402

SMALL = ["--size", "32", "--fps", "2", "--seg-len", "4", "--clip-len", "3", "--val-every", "3",
         "--shard-size", "8", "--workers", "2", "--stream-by", "one"]
EXE = str(Path(sys.executable).with_name("headcam-ingest"))


def ingest_cmd(inputs: Path, out: Path) -> list[str]:
    return [EXE, "videos", "--out", str(out), *SMALL, str(inputs)]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HEADCAM_QUIET": "1"}, **kw)


def assert_same_dataset(clean: Path, other: Path) -> None:
    for name in ("manifest.parquet", "failures.parquet"):  # byte-equal (image manifests hold NaN, != itself)
        assert (clean / name).read_bytes() == (other / name).read_bytes(), name
    assert pq.read_table(other / "manifest.parquet").num_rows > 0
    names = sorted(p.name for p in clean.glob("*.tar"))
    assert names == sorted(p.name for p in other.glob("*.tar"))
    for n in names:
        assert (clean / n).read_bytes() == (other / n).read_bytes(), n
        assert (clean / n).with_suffix(".idx").read_bytes() == (other / n).with_suffix(".idx").read_bytes(), n


def assert_no_leftovers(out: Path) -> None:
    assert not (out / ".staging").exists() and not (out / "journal.jsonl").exists()
    assert [p.name for p in out.rglob("*") if ".tmp-" in p.name] == []


@pytest.fixture(scope="module")
def inputs(media_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    for f in sorted(media_dir.iterdir()):
        (root / f.name).symlink_to(f)
    return root


def timed_clean_run(cmd: list[str], ok: int = 0) -> float:
    t0 = time.monotonic()
    r = run(cmd)
    assert r.returncode == ok, r.stderr
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def clean(inputs, tmp_path_factory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("clean") / "ds"
    return out, timed_clean_run(ingest_cmd(inputs, out))


IMAGE_OPTS = ["--workers", "2", "--shard-size", "40", "--size", "24"]


@pytest.fixture(scope="module")
def image_sources(tmp_path_factory) -> dict[str, Path]:
    """A 32-64 px PNG/JPEG folder with one corrupt file (exit 3), and CIFAR-10 pickles: several
    units each (64 images a unit at this size), several shards per split."""
    root = tmp_path_factory.mktemp("images")
    frames = real_frames()
    make_folder(root / "folder", frames * 5)  # 180 images
    make_cifar10(root / "cifar", frames * 10)  # 270 train, 90 test
    return {"folder": root / "folder", "cifar10": root / "cifar"}


def image_cmd(fmt: str, src: Path) -> Callable[[Path], list[str]]:
    return lambda out: [EXE, "images", "--format", fmt, str(src), "--out", str(out), *IMAGE_OPTS]


@pytest.fixture(scope="module")
def clean_images(image_sources, tmp_path_factory) -> dict[str, tuple[Path, float]]:
    runs = {}
    for fmt, src in image_sources.items():
        out = tmp_path_factory.mktemp(f"clean_{fmt}") / "ds"
        runs[fmt] = (out, timed_clean_run(image_cmd(fmt, src)(out), ok=3 if fmt == "folder" else 0))
    return runs


def kill_at_random_points(cmd_for: Callable[[Path], list[str]], clean: tuple[Path, float], tmp_path: Path,
                          trials: int, seed: int, ok: int = 0) -> int:
    """Kill ingest (whole process group, or the parent only) at random times, resume, compare."""
    clean_dir, duration = clean
    rng = random.Random(seed)
    killed = 0
    for t in range(trials):
        out = tmp_path / f"trial{t}"
        cmd = cmd_for(out)
        for _ in range(rng.randint(1, 2)):  # sometimes kill the resumed run too
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, "HEADCAM_QUIET": "1"})
            time.sleep(rng.uniform(0.02, 0.95) * duration)
            if proc.poll() is None:
                if rng.random() < 0.7:
                    os.killpg(proc.pid, signal.SIGKILL)  # a scheduler killing the job
                else:
                    proc.send_signal(signal.SIGKILL)  # the OOM killer taking the parent only
                killed += 1
            proc.wait()
        finished = (out / "dataset.json").exists()  # complete before the kill: the resume has nothing to do
        r = run(cmd)
        assert r.returncode == (0 if finished else ok), f"trial {t}: resume failed: {r.stderr}"
        assert_same_dataset(clean_dir, out)
        assert_no_leftovers(out)
        r = run(cmd)
        assert r.returncode == 0 and "nothing to do" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    return killed


def test_random_sigkills_short(inputs, clean, tmp_path):
    assert kill_at_random_points(lambda out: ingest_cmd(inputs, out), clean, tmp_path, trials=3, seed=1) >= 1


@pytest.mark.parametrize("fmt", ["folder", "cifar10"])
def test_random_sigkills_images_short(fmt, image_sources, clean_images, tmp_path):
    killed = kill_at_random_points(image_cmd(fmt, image_sources[fmt]), clean_images[fmt], tmp_path, trials=3,
                                   seed=3, ok=3 if fmt == "folder" else 0)
    assert killed >= 1


@pytest.mark.slow
def test_random_sigkills_many(inputs, clean, tmp_path):
    killed = kill_at_random_points(lambda out: ingest_cmd(inputs, out), clean, tmp_path, trials=25, seed=2)
    print(f"25 trials, {killed} kills, every resume equal to the clean run")
    assert killed >= 15


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["folder", "cifar10"])
def test_random_sigkills_images_many(fmt, image_sources, clean_images, tmp_path):
    killed = kill_at_random_points(image_cmd(fmt, image_sources[fmt]), clean_images[fmt], tmp_path, trials=25,
                                   seed=4, ok=3 if fmt == "folder" else 0)
    print(f"{fmt}: 25 trials, {killed} kills, every resume equal to the clean run")
    assert killed >= 15


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> tuple[Path, tuple[Path, float]]:
    """A 20 s H.264 video with B-frames (40 samples at 2 fps) and its clean unsplit dataset."""
    root = tmp_path_factory.mktemp("long")
    video = h264(root / "long.mp4", 20)
    out = tmp_path_factory.mktemp("clean_long") / "ds"
    return video, (out, timed_clean_run([*ingest_cmd(video, out), "--unit-frames", "0"]))


@pytest.mark.slow
def test_random_sigkills_split_video_many(long_video, tmp_path):
    """One video in 10 time-range parts (``--unit-frames 4``), killed anywhere: every resume equals the
    unsplit ingest."""
    video, clean = long_video
    killed = kill_at_random_points(lambda out: [*ingest_cmd(video, out), "--unit-frames", "4"], clean, tmp_path,
                                   trials=20, seed=5)
    print(f"split video: 20 trials, {killed} kills, every resume equal to the unsplit run")
    assert killed >= 10


def _small_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _assert_failed_cleanly(r: subprocess.CompletedProcess, out: Path) -> None:
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("headcam-ingest: error:") and "run the same command again" in last
    assert "Traceback" not in r.stderr
    assert not (out / "dataset.json").exists()  # a dataset is complete iff dataset.json exists


def test_full_disk_is_one_line_then_resumes(inputs, clean, tmp_path):
    mnt = tmp_path / "small"
    if not _small_tmpfs(mnt, "200k"):
        pytest.skip("cannot mount a size-limited tmpfs here (needs root); the RLIMIT_FSIZE test covers the logic")
    try:
        out = mnt / "ds"
        _assert_failed_cleanly(run(ingest_cmd(inputs, out)), out)
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        r = run(ingest_cmd(inputs, out))
        assert r.returncode == 0, r.stderr
        assert_same_dataset(clean[0], out)
        assert_no_leftovers(out)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_file_size_limit_is_one_line_then_resumes(inputs, clean, tmp_path):
    """An injected write failure (RLIMIT_FSIZE: EFBIG) anywhere in ingest, then a resume without the limit."""
    out = tmp_path / "ds"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    r = subprocess.run(ingest_cmd(inputs, out), capture_output=True, text=True, preexec_fn=limit,
                       env={**os.environ, "HEADCAM_QUIET": "1"})
    _assert_failed_cleanly(r, out)
    r = run(ingest_cmd(inputs, out))
    assert r.returncode == 0, r.stderr
    assert_same_dataset(clean[0], out)
    assert_no_leftovers(out)


def test_hostile_names_and_output_inside_input_tree(media_dir, tmp_path):
    tree = tmp_path / "in put"
    names = ["-leading dash.mpg", "ünïcødé 名前.avi", "with  spaces & 'quotes'.mp4"]
    tree.mkdir()
    for name, src in zip(names, sorted(media_dir.iterdir()), strict=True):
        (tree / name).symlink_to(src)
    out = tree / "out inside"
    r = run([EXE, "videos", "--out", str(out), *SMALL, "--", str(tree)])
    assert r.returncode == 0, r.stderr
    sources = set(pq.read_table(out / "manifest.parquet").column("source").to_pylist())
    assert {Path(s).name for s in sources} == set(names)
    r = run([EXE, "videos", "--out", str(out), *SMALL, "--", str(tree)])  # out/ is not re-ingested as input
    assert r.returncode == 0 and "nothing to do" in (r.stdout + r.stderr).lower()
