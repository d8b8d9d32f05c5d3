"""A real single-node Slurm for the Slurm tests (tests/train/test_slurm.py, tests/ingest/test_slurm_ingest.py):
started by scripts/slurm_local.sh, or a clean skip that says why (not root, packages absent, no start)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_local.sh"


def require_slurm() -> None:
    """Start the local Slurm (idempotent) or skip the calling test with the reason."""
    missing = [t for t in ("sbatch", "squeue", "scontrol", "slurmctld", "slurmd", "munged")
               if not (shutil.which(t) or os.access(f"/usr/sbin/{t}", os.X_OK))]
    if missing:
        pytest.skip(f"Slurm not installed ({', '.join(missing)} missing; apt-get install slurmctld slurmd "
                    "slurm-client munge)")
    if os.geteuid() != 0:
        pytest.skip("the local Slurm (scripts/slurm_local.sh) starts munged, slurmctld and slurmd as root")
    run = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        pytest.skip(f"scripts/slurm_local.sh could not start Slurm: {run.stderr.strip()}")


def job_fields(job_id: str) -> dict[str, str]:
    """``scontrol show job``'s KEY=VALUE fields (the record stays MinJobAge = 600 s after the end)."""
    text = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


def wait_until_gone(job_ids: list[str], timeout: float) -> None:
    """Wait until Slurm runs none of ``job_ids`` any more (array tasks and requeues included)."""
    end = time.monotonic() + timeout
    while True:
        queued = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True,
                                text=True).stdout.strip()
        if not queued:
            return
        if time.monotonic() > end:
            subprocess.run(["scancel", *job_ids])
            pytest.fail(f"Slurm jobs still queued after {timeout:.0f} s: {queued}")
        time.sleep(0.5)
