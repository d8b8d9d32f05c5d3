"""Preemption and crashes with the real CLI in a subprocess: SIGKILL then resume=auto is exact; SIGTERM saves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _train_helpers import DEMO, TINY

from headcam.train.cli import main

#: MoCo: its resume must also restore the queue and the key encoder; deterministic kernels for bit-equality.
ARGS = ["method=moco", "steps=6", *TINY, "ckpt_every=2", "deterministic=true", "optim.name=sgd", "optim.lr=0.05",
        "optim.warmup_steps=2"]


def start_cli(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, HEADCAM_QUIET="1")
    return subprocess.Popen([sys.executable, "-m", "headcam.train.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended before the test could interrupt it: {proc.communicate()}"
        assert time.monotonic() < end, "timed out waiting for the run"
        time.sleep(0.05)


def load(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_sigkill_then_resume_gives_the_same_weights(workers, tiny_dataset, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = [*ARGS, f"workers={workers}", "batch_size=4"] if workers else ARGS  # 2 workers: 2 slots of 13 samples
    assert main([DEMO, f"data={tiny_dataset}", f"out={straight}", *args]) == 0

    proc = start_cli([DEMO, f"data={tiny_dataset}", f"out={killed}", *args])
    wait_for(lambda: (killed / "checkpoint.pt").exists(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert load(killed)["step"] < 6

    assert main([DEMO, f"data={tiny_dataset}", f"out={killed}", *args, "resume=auto"]) == 0
    a, b = load(straight), load(killed)
    assert a["step"] == b["step"] == 6 and a["data"] == b["data"]
    for name, tensor in a["model"].items():  # trunk, heads, key encoder, queue and its pointer
        assert torch.equal(tensor, b["model"][name]), name
    assert torch.equal(a["model"]["queue.keys"], b["model"]["queue.keys"])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl_c"])
def test_preemption_finishes_the_step_saves_and_exits_3(tiny_dataset, tmp_path, sig):
    run = tmp_path / "run"
    proc = start_cli([DEMO, f"data={tiny_dataset}", f"out={run}", "method=tc", "steps=200", *TINY])
    metrics = run / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.read_text().count("\n") >= 1, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "PREEMPTED" in out
    last_logged = json.loads(metrics.read_text().splitlines()[-1])["step"]
    assert 1 <= load(run)["step"] == last_logged < 200
