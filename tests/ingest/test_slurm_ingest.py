"""``headcam-ingest videos ... --slurm 2`` on a real single-node Slurm (scripts/slurm_local.sh; skipped without
it): a two-part ingest array, the two-part merge array after it and the final step after that give the same shards
and manifest as one local run."""

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


def test_ingest_array_then_merge_array_then_final_step_equals_a_local_run(inputs, tmp_path, capsys):
    require_slurm()
    local, queued = tmp_path / "local", tmp_path / "queued"
    assert main(["videos", "--out", str(local), *FAST, str(inputs)]) == 0
    capsys.readouterr()

    assert main(["videos", "--out", str(queued), *FAST, "--slurm", "2", "--cpus", "1", "--time", "00:10",
                 str(inputs)]) == 0
    said = capsys.readouterr().out
    stage_id, merge_id, final_id = re.search(r"array job (\d+) .* array job (\d+) .* job (\d+) ", said).groups()
    wait_until_gone([stage_id, merge_id, final_id], timeout=300)
    stage = [job_fields(f"{stage_id}_{i}") for i in (0, 1)]
    merge = [job_fields(f"{merge_id}_{i}") for i in (0, 1)]
    final = job_fields(final_id)
    assert [f["JobState"] for f in (*stage, *merge, final)] == ["COMPLETED"] * 5, (stage, merge, final)
    for job_id, after in ((merge_id, stage_id), (final_id, merge_id)):
        script = (queued / ".slurm" / f"{job_id}_submission.sh").read_text()
        assert f"--dependency=afterok:{after}" in script and "--kill-on-invalid-dep=yes" in script
    assert "--array=0-1" in (queued / ".slurm" / f"{merge_id}_submission.sh").read_text()
    # ISO times: each stage began after every task of the one before ended
    assert min(f["StartTime"] for f in merge) >= max(f["EndTime"] for f in stage)
    assert final["StartTime"] >= max(f["EndTime"] for f in merge)
    logs = "".join(p.read_text() for p in (queued / ".slurm").glob(f"{merge_id}_*_log.out"))
    assert "merge part 1/2" in logs and "merge part 2/2" in logs

    ta = pq.read_table(local / "manifest.parquet")
    assert ta.num_rows > 0 and ta.equals(pq.read_table(queued / "manifest.parquet"))
    shards = sorted(p.name for p in local.glob("*.tar"))
    assert len(shards) >= 2 and shards == sorted(p.name for p in queued.glob("*.tar"))
    for name in shards:
        assert (local / name).read_bytes() == (queued / name).read_bytes(), name
    assert not (queued / ".staging").exists() and not list(queued.glob("journal*"))


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
