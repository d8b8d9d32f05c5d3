"""``headcam-ingest videos ... --slurm 2`` on a real single-node Slurm (scripts/slurm_local.sh; skipped without
it): a two-part job array and the merge job after it give the same shards and manifest as one local run."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from slurm_helpers import job_fields, require_slurm, wait_until_gone

from headcam.ingest.cli import main

FAST = ["--size", "48", "--fps", "2", "--seg-len", "4", "--clip-len", "4", "--val-every", "3", "--shard-size", "12",
        "--workers", "1"]


@pytest.fixture(scope="module")
def inputs(media_dir, tmp_path_factory) -> Path:
    """Four videos in two streams (symlinks to the shared media), so each part gets some of each."""
    root = tmp_path_factory.mktemp("inputs")
    for child in ("child_a", "child_b"):
        (root / child).mkdir()
        for f in sorted(media_dir.iterdir())[:2]:
            (root / child / f.name).symlink_to(f)
    return root


def test_array_of_two_parts_then_merge_equals_a_local_run(inputs, tmp_path, capsys):
    require_slurm()
    local, queued = tmp_path / "local", tmp_path / "queued"
    assert main(["videos", "--out", str(local), *FAST, str(inputs)]) == 0
    capsys.readouterr()

    assert main(["videos", "--out", str(queued), *FAST, "--slurm", "2", "--cpus", "1", "--time", "00:10",
                 str(inputs)]) == 0
    said = capsys.readouterr().out
    array_id, merge_id = re.search(r"array job (\d+) .* merge job (\d+)", said).groups()
    wait_until_gone([array_id, merge_id], timeout=300)
    parts = [job_fields(f"{array_id}_{i}") for i in (0, 1)]
    merge = job_fields(merge_id)
    assert [f["JobState"] for f in (*parts, merge)] == ["COMPLETED"] * 3, (parts, merge)
    script = (queued / ".slurm" / f"{merge_id}_submission.sh").read_text()
    assert f"--dependency=afterok:{array_id}" in script and "--kill-on-invalid-dep=yes" in script
    assert merge["StartTime"] >= max(f["EndTime"] for f in parts)  # ISO times: the merge began after both parts

    ta = pq.read_table(local / "manifest.parquet")
    assert ta.num_rows > 0 and ta.equals(pq.read_table(queued / "manifest.parquet"))
    shards = sorted(p.name for p in local.glob("*.tar"))
    assert len(shards) >= 2 and shards == sorted(p.name for p in queued.glob("*.tar"))
    for name in shards:
        assert (local / name).read_bytes() == (queued / name).read_bytes(), name
    assert not (queued / ".staging").exists()


def test_slurm_mistakes_are_one_line(inputs, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "ds")
    for extra, message in [(["--slurm", "2", "--part", "1/2"], "leave out --part"),
                           (["--slurm", "2", "--time", "4h"], "give [D-]HH:MM"),
                           (["--slurm", "-1"], "--slurm must be >= 1")]:
        assert main(["videos", "--out", out, *FAST, *extra, str(inputs)]) == 2
        assert message in capsys.readouterr().err
    assert main(["videos", "--out", out, *FAST, "--slurm", "2", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["videos", "--out", out, *FAST, "--slurm", "2", str(inputs)]) == 2
    assert "sbatch/srun not found" in capsys.readouterr().err
