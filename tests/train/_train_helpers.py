"""Shared settings for trainer tests (a uniquely named module: tests/ has no packages)."""

from __future__ import annotations

import json
from pathlib import Path

#: Tiny but real: resnet18 at 32 px, batch 8 (tests/train must stay fast on 2 CPU cores).
TINY = ["arch=resnet18", "size=32", "batch_size=8", "workers=0", "log_every=1", "ckpt_every=1000",
        "shuffle_buffer=16", "moco.queue=64", "optim.warmup_steps=0", "device=cpu"]
DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
