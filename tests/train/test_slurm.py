"""``headcam-train ... slurm.*`` on a real single-node Slurm (scripts/slurm_local.sh; skipped without it).

A 4-step run gets Slurm's time-limit warning (SIGUSR2, the signal submitit has Slurm send 90 s before the end)
after its first checkpoint: it finishes the step, saves, requeues itself through submitit, waits out Slurm's
begin time, resumes with resume=auto and ends with the same weights as an uninterrupted run here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from _train_helpers import DEMO, TINY, load, metrics
from slurm_helpers import job_fields, require_slurm, wait_until_gone

from headcam.train.cli import main

#: Deterministic CPU training; size 64 makes a step last long enough (~1 s) for the warning to land mid-run.
ARGS = ["steps=4", *TINY, "size=64", "ckpt_every=1", "deterministic=true", "optim.lr=0.05", "method=simclr"]


@pytest.fixture(scope="module")
def slurm():
    require_slurm()


def test_time_limit_warning_checkpoints_requeues_and_resumes_exactly(slurm, tiny_dataset, tmp_path):
    straight, queued = tmp_path / "straight", tmp_path / "queued"
    assert main([DEMO, f"data={tiny_dataset}", f"out={straight}", *ARGS]) == 0

    sub = subprocess.run([sys.executable, "-m", "headcam.train.cli", DEMO, f"data={tiny_dataset}", f"out={queued}",
                          *ARGS, "slurm.nodes=1", "slurm.time=00:10", "slurm.cpus_per_task=1"],
                         capture_output=True, text=True, timeout=120)
    assert sub.returncode == 0, sub.stderr
    job = re.search(r"submitted Slurm job (\d+)", sub.stdout).group(1)
    assert str(queued / "slurm") in sub.stdout

    log = queued / "metrics.jsonl"
    wait = 0.0
    while not (log.exists() and log.read_text().count("\n") >= 1):  # step 1 done and saved (ckpt_every=1)
        assert job_fields(job).get("JobState") in ("PENDING", "RUNNING"), job_fields(job)
        subprocess.run(["sleep", "0.05"])
        wait += 0.05
        assert wait < 300, "the job never finished its first step"
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    wait_until_gone([job], timeout=300)

    fields = job_fields(job)
    assert fields["JobState"] == "COMPLETED" and fields["Restarts"] == "1", fields
    steps = [m["step"] for m in metrics(queued)]
    assert steps == [1, 2, 3, 4], f"each step once, across the requeue: {steps}"
    out = (queued / "slurm" / f"{job}_0_log.out").read_text()
    assert "PREEMPTED" not in out and out.count("simclr resnet18") == 2, out  # two starts: from 0, then resumed
    assert re.search(r"from step [123] of 4", out), out
    a, b = load(straight), load(queued)
    assert a["step"] == b["step"] == 4 and a["data"] == b["data"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def _two_ranks() -> tuple[int, int, int, float]:
    import torch.distributed

    from headcam.train import dist
    from headcam.train.slurm import export_rendezvous

    export_rendezvous()
    env = dist.setup("cpu")
    total = torch.tensor([env.rank + 1.0])
    torch.distributed.all_reduce(total)
    dist.teardown()
    return env.rank, env.world, env.local_rank, total.item()


def test_tasks_of_a_job_join_one_process_group(slurm, tmp_path):
    """Two tasks of one job (as one task per GPU gives) rendezvous from the Slurm environment alone."""
    import cloudpickle
    import submitit

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the job cannot import this test module
    ex = submitit.SlurmExecutor(folder=tmp_path)
    ex.update_parameters(nodes=1, ntasks_per_node=2, cpus_per_task=1, time=5)
    job = ex.submit(_two_ranks)
    wait_until_gone([job.job_id], timeout=300)
    assert sorted(job.results()) == [(0, 2, 0, 3.0), (1, 2, 1, 3.0)]


def test_submission_mistakes_are_one_line(tiny_dataset, tmp_path):
    base = [DEMO, f"data={tiny_dataset}", f"out={tmp_path}", "device=cpu"]
    for extra, message in [(["slurm.nodes=1"], "slurm.time=HH:MM"),
                           (["slurm.nodes=1", "slurm.time=4h"], "give [D-]HH:MM"),
                           (["slurm.nodes=1", "slurm.time=1:00", "slurm.mem=lots"], "slurm.mem='lots'"),
                           (["slurm.nodes=-1"], "must be >= 0")]:
        run = subprocess.run([sys.executable, "-m", "headcam.train.cli", *base, *extra], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_no_sbatch_or_its_refusal_is_one_line(tiny_dataset, tmp_path):
    base = [sys.executable, "-m", "headcam.train.cli", DEMO, f"data={tiny_dataset}", f"out={tmp_path}", "device=cpu",
            "slurm.nodes=1", "slurm.time=00:10"]
    run = subprocess.run(base, capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": "/nonexistent"})
    assert run.returncode == 2 and "sbatch/srun not found" in run.stderr and "Traceback" not in run.stderr, run.stderr
    require_slurm()
    run = subprocess.run([*base, "slurm.partition=nope"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "sbatch refused the job" in run.stderr and "partition" in run.stderr, run.stderr


def test_the_time_limit_warning_is_a_stop_request_that_is_told_apart():
    """SIGUSR2 stops the loop like SIGTERM does; last_signal says which came, so only the warning requeues."""
    import signal

    from headcam.train.utils import StopRequest

    for sig in (signal.SIGUSR2, signal.SIGTERM):
        with StopRequest() as stop:
            signal.raise_signal(sig)
        assert stop.requested and StopRequest.last_signal == sig


def test_time_limit_forms():
    from headcam.train.config import SlurmConfig

    assert [SlurmConfig(time=t).minutes() for t in ("04:00", "1-00:30", "90", 240, "")] == [240, 1470, 90, 240, 0]
