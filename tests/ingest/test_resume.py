"""Killed, resumed, split into parts: always the same dataset as one clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fixtures_videos import two_streams

from headcam.ingest.cli import main

FAST = ["--size", "48", "--fps", "2", "--seg-len", "4", "--clip-len", "4", "--val-every", "3", "--shard-size", "12",
        "--saliency", "spectral"]


@pytest.fixture(scope="module")
def inputs(media_dir, tmp_path_factory) -> Path:
    return two_streams(media_dir, tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def clean(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "ds"
    assert main(["videos", "--out", str(out), *FAST, "--workers", "2", str(inputs)]) == 0
    return out


def same_dataset(a: Path, b: Path) -> None:
    ta, tb = pq.read_table(a / "manifest.parquet"), pq.read_table(b / "manifest.parquet")
    assert ta.num_rows > 0 and ta.equals(tb)
    shards = sorted(p.name for p in a.glob("*.tar"))
    assert shards == sorted(p.name for p in b.glob("*.tar"))
    for name in shards:  # shards are byte-deterministic
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def no_leftovers(out: Path) -> None:
    assert not (out / ".staging").exists()
    assert [p.name for p in out.rglob("*") if ".tmp-" in p.name] == []


def test_clean_run_has_two_streams(clean):
    import json

    meta = json.loads((clean / "dataset.json").read_text())
    ranges = meta["classes"]["ranges"]
    assert [Path(r["stream"]).name for r in ranges] == ["child_a", "child_b"]
    assert ranges[1]["first_class"] == ranges[0]["n_classes"] and meta["shards"]["train"] >= 2
    no_leftovers(clean)


def _start(args: list[str]) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("headcam-ingest"))
    return subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HEADCAM_QUIET": "1"})


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 60) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()``; False if it finished first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("ingest neither progressed nor finished")


def _journal_lines(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def test_sigkill_during_decode_then_resume_equals_clean_run(inputs, clean, tmp_path):
    out = tmp_path / "killed"
    args = ["videos", "--out", str(out), *FAST, "--workers", "1", str(inputs)]
    journal = out / ".staging" / "units.all.jsonl"
    killed = _kill_when(_start(args), lambda: _journal_lines(journal) >= 2)
    assert killed, "ingest finished before it could be killed"
    assert not (out / "dataset.json").exists()
    assert 2 <= _journal_lines(journal) < 6  # some videos staged, not all
    assert main(args) == 0
    same_dataset(clean, out)
    no_leftovers(out)


def test_sigkill_while_writing_shards_then_resume(inputs, clean, tmp_path):
    out = tmp_path / "killed2"
    args = ["videos", "--out", str(out), *FAST, "--workers", "2", str(inputs)]
    killed = _kill_when(_start(args), lambda: _journal_lines(out / "journal.jsonl") >= 1)
    if killed:
        assert not (out / "dataset.json").exists()
    assert main(args) == 0
    same_dataset(clean, out)
    no_leftovers(out)


def test_parts_then_merge_equal_single_run(inputs, clean, tmp_path, capsys):
    out = tmp_path / "parts"
    for part in ("1/2", "2/2"):
        assert main(["videos", "--out", str(out), *FAST, "--workers", "2", "--part", part, str(inputs)]) == 0
        assert "merge" in capsys.readouterr().out
    assert not (out / "dataset.json").exists()
    assert main(["merge", str(out)]) == 0
    same_dataset(clean, out)
    no_leftovers(out)
    assert main(["merge", str(out)]) == 0 and "nothing to do" in capsys.readouterr().out


def test_parts_in_separate_directories_merge_elsewhere(inputs, clean, tmp_path, monkeypatch):
    import headcam.ingest.engine as engine

    monkeypatch.setattr(engine, "IN_PROCESS_SAMPLES", 0)  # shards written by worker processes this time
    a, b, dest = tmp_path / "a", tmp_path / "b", tmp_path / "dest"
    assert main(["videos", "--out", str(a), *FAST, "--workers", "2", "--part", "1/2", str(inputs)]) == 0
    assert main(["videos", "--out", str(b), *FAST, "--workers", "2", "--part", "2/2", str(inputs)]) == 0
    assert main(["merge", str(a), str(b), "--out", str(dest)]) == 0
    same_dataset(clean, dest)


def test_merge_refuses_while_a_part_is_missing(inputs, tmp_path, capsys):
    out = tmp_path / "half"
    assert main(["videos", "--out", str(out), *FAST, "--workers", "2", "--part", "1/2", str(inputs)]) == 0
    assert main(["merge", str(out)]) == 2
    assert "2/2" in capsys.readouterr().err
    assert not (out / "dataset.json").exists()


def test_resume_with_other_parameters_is_refused(inputs, tmp_path):
    out = tmp_path / "p"
    assert main(["videos", "--out", str(out), *FAST, "--workers", "1", "--part", "1/2", str(inputs)]) == 0
    assert main(["videos", "--out", str(out), *FAST, "--workers", "1", "--part", "2/2", "--seed", "7",
                 str(inputs)]) == 2


LOG_ENV = "HEADCAM_TEST_STAGE_LOG"


def logging_stage(unit, key, staging_dir, params):
    """stage_video that also appends the path it decodes to a log file (works across worker processes)."""
    from headcam.ingest.stage import stage_video

    with open(os.environ[LOG_ENV], "a") as f:
        f.write(unit.path + "\n")
    return stage_video(unit, key, staging_dir, params)


def test_whole_run_after_a_part_reuses_the_staged_part(inputs, clean, tmp_path, monkeypatch):
    import headcam.ingest.videos as videos

    log = tmp_path / "decoded.txt"
    monkeypatch.setenv(LOG_ENV, str(log))
    monkeypatch.setattr(videos, "stage_video", logging_stage)
    out = tmp_path / "mixed"
    assert main(["videos", "--out", str(out), *FAST, "--workers", "2", "--part", "1/2", str(inputs)]) == 0
    assert main(["videos", "--out", str(out), *FAST, "--workers", "2", str(inputs)]) == 0
    same_dataset(clean, out)
    decoded = log.read_text().splitlines()
    assert len(decoded) == len(set(decoded)) == 6  # each video decoded once: part 1's three were reused
