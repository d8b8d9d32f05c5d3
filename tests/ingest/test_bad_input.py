"""Bad input never stops an ingest: each bad file is one failures.parquet row, and exit codes say what happened."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from headcam.ingest.cli import main

FAST = ["--size", "64", "--fps", "2", "--seg-len", "4", "--workers", "2"]
AS_ROOT = os.geteuid() == 0


def run_cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess:
    """The real console script in a subprocess (optionally as another user, to test permissions as root)."""
    def drop() -> None:
        os.setgid(user)
        os.setuid(user)

    exe = str(Path(sys.executable).with_name("headcam-ingest"))
    env = {**os.environ, "HEADCAM_QUIET": "1", "HOME": "/tmp"}
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=120,
                          preexec_fn=drop if user is not None else None)


@pytest.fixture
def bad_dir(media_dir, edge_dir, tmp_path) -> Path:
    d = tmp_path / "in put"
    d.mkdir()
    (d / "zero.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(os.urandom(50_000))
    data = (media_dir / "cityCC0.mpg").read_bytes()
    (d / "truncated.mpg").write_bytes(data[: len(data) // 3])
    shutil.copy(edge_dir / "h265_video.mp4", d / "with space ünïcødé 视频.mp4")
    shutil.copy(edge_dir / "h265_video.mp4", d / "-leading-dash.mp4")
    (d / "notes.txt").write_text("not a video")
    return d


def test_bad_files_are_reported_and_the_rest_ingested(bad_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["videos", "--out", str(out), *FAST, "--stream-by", "file", str(bad_dir)]) == 3
    summary = capsys.readouterr().out
    assert "2 failed" in summary and "failures.parquet" in summary
    fails = {Path(f["path"]).name: f for f in pq.read_table(out / "failures.parquet").to_pylist()}
    assert set(fails) == {"zero.mp4", "random.mp4"}
    assert all(f["stage"] == "probe" and f["error_type"] and f["message"] for f in fails.values())
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    counts = {Path(s).name: sum(1 for r in rows if r["source"] == s) for s in {r["source"] for r in rows}}
    assert counts["with space ünïcødé 视频.mp4"] == counts["-leading-dash.mp4"] == 2
    # a truncated MPEG-PS file keeps the frames before the cut: about a third of 7.6 s at 2 fps
    assert 3 <= counts["truncated.mpg"] <= 6
    keys = [r["key"] for r in rows]
    assert len(set(keys)) == len(keys) and all("." not in k for k in keys)


def test_leading_dash_name_on_the_command_line(bad_dir, tmp_path, monkeypatch):
    out = tmp_path / "dash"
    monkeypatch.chdir(bad_dir)
    assert main(["videos", "--out", str(out), *FAST, "--", "-leading-dash.mp4"]) == 0
    assert pq.read_table(out / "manifest.parquet").column("source")[0].as_py() == str(bad_dir / "-leading-dash.mp4")


def test_list_file_input(bad_dir, tmp_path):
    (bad_dir / "list.txt").write_text("# inputs\nwith space ünïcødé 视频.mp4\n\n-leading-dash.mp4\n")
    out = tmp_path / "list"
    assert main(["videos", "--out", str(out), *FAST, f"@{bad_dir / 'list.txt'}"]) == 0
    assert len(set(pq.read_table(out / "manifest.parquet").column("source").to_pylist())) == 2


def test_nothing_could_be_done_exits_1(bad_dir, tmp_path, capsys):
    assert main(["videos", "--out", str(tmp_path / "o1"), *FAST, str(bad_dir / "zero.mp4"),
                 str(bad_dir / "random.mp4"), str(bad_dir / "notes.txt")]) == 1
    # each failed input by path, stage and reason, then the one-line summary
    *listed, summary = capsys.readouterr().err.strip().splitlines()
    assert sorted(line.split(": ")[0].strip() for line in listed) == [str(bad_dir / n) for n in
                                                                      ("notes.txt", "random.mp4", "zero.mp4")]
    assert all(": probe failed: " in line and len(line.split(": ")) >= 4 for line in listed), listed
    assert summary.startswith("nothing ingested: 3 failed (probe: 3)")
    assert pq.read_table(tmp_path / "o1" / "failures.parquet").num_rows == 3
    assert not (tmp_path / "o1" / "dataset.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["videos", "--out", str(tmp_path / "o2"), *FAST, str(empty)]) == 1


def test_output_inside_input_tree_is_not_ingested(edge_dir, tmp_path):
    src = tmp_path / "tree"
    out = src / "dataset"
    out.mkdir(parents=True)
    shutil.copy(edge_dir / "h265_video.mp4", src / "a.mp4")
    shutil.copy(edge_dir / "h265_video.mp4", out / "stray.mp4")  # e.g. left there by the user: never input
    assert main(["videos", "--out", str(out), *FAST, str(src)]) == 0
    assert set(pq.read_table(out / "manifest.parquet").column("source").to_pylist()) == {str(src / "a.mp4")}


def test_usage_errors_are_one_line_exit_2(edge_dir, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args in (["videos", "--out", str(afile / "sub"), str(edge_dir / "h265_video.mp4")],
                 ["videos", "--out", str(tmp_path / "o"), "--part", "3/2", str(edge_dir / "h265_video.mp4")],
                 ["videos", "--out", str(tmp_path / "o"), "--saliency", "/no/model.pt", str(edge_dir)],
                 ["inspect", str(tmp_path)]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("headcam-ingest: error:"), err
    # the installed console script, in a subprocess: argparse errors and ours both exit 2 without a traceback
    for args in (["videos", "--out", str(tmp_path / "o"), "--rotate", "45", str(edge_dir)],
                 ["videos", "--out", str(afile), str(edge_dir / "h265_video.mp4")]):
        r = run_cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "error:" in r.stderr.strip().splitlines()[-1]


@pytest.fixture
def world_tmp():
    """A temp dir another user can use (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="headcam-perm-"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def as_nobody(fn, *args) -> int:
    """``fn(*args)`` (returning an exit code) in a forked child; as root the child drops to 'nobody',
    since root ignores permissions. No new process is exec'd: the venv's interpreter may live under
    /root, where 'nobody' cannot run it, so only work done in this process can be tested this way."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            if AS_ROOT:
                os.setgid(65534)
                os.setuid(65534)
            code = fn(*args)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_unwritable_output_is_one_line_exit_2(edge_dir, world_tmp, capfd):
    locked = world_tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    assert as_nobody(main, ["videos", "--out", str(locked / "ds"), str(edge_dir / "h265_video.mp4")]) == 2
    err = capfd.readouterr().err
    assert "cannot write to output directory" in err and len(err.strip().splitlines()) == 1, err


def _expand_to_file(src: str, result: str) -> int:
    import json

    from headcam.ingest.failures import FailureLog
    from headcam.ingest.inputs import expand_inputs

    failures = FailureLog()
    found = expand_inputs([src], failures)
    Path(result).write_text(json.dumps({"videos": found.videos, "failures": failures.rows}))
    return 0


def test_unreadable_directory_is_a_failure_row(edge_dir, world_tmp):
    import json

    src = world_tmp / "src"
    (src / "hidden").mkdir(parents=True)
    shutil.copy(edge_dir / "h265_video.mp4", src / "ok.mp4")
    shutil.copy(edge_dir / "h265_video.mp4", src / "hidden" / "secret.mp4")
    src.chmod(0o777)
    (src / "hidden").chmod(0o000)
    result = world_tmp / "result.json"
    assert as_nobody(_expand_to_file, str(src), str(result)) == 0
    found = json.loads(result.read_text())
    assert found["videos"] == [str(src / "ok.mp4")]
    assert [(f["path"], f["stage"], f["error_type"]) for f in found["failures"]] == [(str(src / "hidden"), "read",
                                                                                     "PermissionError")]


def test_a_missing_input_is_a_usage_error_and_a_missing_list_line_a_failure(edge_dir, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "no such dir"
    for inputs in ([str(edge_dir / "h265_video.mp4"), str(missing)], [f"@{missing / 'list.txt'}"]):
        assert main(["videos", "--out", str(out), *FAST, *inputs]) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [f"headcam-ingest: error: {inputs[-1].lstrip('@')}: no such file or "
                                            "directory"]
        assert not out.exists()  # told before anything was made
    # a job list naming a file that is gone costs that line only: a failure row, listed, exit 3
    (tmp_path / "list.txt").write_text(f"{edge_dir / 'h265_video.mp4'}\n{missing}\n")
    assert main(["videos", "--out", str(out), *FAST, f"@{tmp_path / 'list.txt'}"]) == 3
    fails = pq.read_table(out / "failures.parquet").to_pylist()
    assert [(f["path"], f["stage"], f["error_type"]) for f in fails] == [(str(missing), "read", "FileNotFoundError")]
    assert f"  {missing}: read failed: FileNotFoundError: no such file or directory" in capsys.readouterr().err


def test_failure_listing_stops_at_twenty(capsys):
    from headcam.ingest.engine import print_failures
    from headcam.ingest.failures import FailureLog

    failures = FailureLog()
    for i in range(23):
        failures.add(f"/in/v{i:02d}.mp4", "decode", "DecodeError", f"bad packet {i}")
    print_failures(failures)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 21 and lines[0] == "  /in/v00.mp4: decode failed: DecodeError: bad packet 0"
    assert lines[19].startswith("  /in/v19.mp4") and lines[20] == "  ... and 3 more"


def crashing_stage(unit, key, staging_dir, params):
    """Stands in for a decoder that kills its process (e.g. a segfault) on one file."""
    from headcam.ingest.stage import stage_video

    if unit.path.endswith("crash.mp4"):
        os._exit(139)
    return stage_video(unit, key, staging_dir, params)


def test_a_dying_worker_costs_only_its_own_file(edge_dir, tmp_path, monkeypatch):
    import headcam.ingest.videos as videos

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.mp4", "crash.mp4", "b.mp4"):
        shutil.copy(edge_dir / "h265_video.mp4", src / name)
    monkeypatch.setattr(videos, "stage_video", crashing_stage)
    out = tmp_path / "out"
    assert main(["videos", "--out", str(out), *FAST, str(src)]) == 3
    fails = pq.read_table(out / "failures.parquet").to_pylist()
    assert [(Path(f["path"]).name, f["error_type"]) for f in fails] == [("crash.mp4", "WorkerCrashed")]
    sources = {Path(s).name for s in pq.read_table(out / "manifest.parquet").column("source").to_pylist()}
    assert sources == {"a.mp4", "b.mp4"}
