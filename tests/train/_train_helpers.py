"""Shared settings for trainer tests (a uniquely named module: tests/ has no packages)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

#: Tiny but real: resnet18 at 32 px, batch 8 (tests/train must stay fast on 2 CPU cores).
TINY = ["arch=resnet18", "size=32", "batch_size=8", "workers=0", "log_every=1", "ckpt_every=1000",
        "shuffle_buffer=16", "moco.queue=64", "optim.warmup_steps=0", "device=cpu"]
DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


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
