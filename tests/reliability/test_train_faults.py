"""Fault injection on the real ``headcam-train`` CLI over a dataset ingested from the shared media."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

EXE = Path(sys.executable).with_name
ROOT = Path(__file__).resolve().parents[2]
TINY = ["arch=resnet18", "size=32", "batch_size=8", "workers=0", "log_every=1", "device=cpu"]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HEADCAM_QUIET": "1"}, **kw)


@pytest.fixture(scope="module")
def media_data(media_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("media") / "ds"
    r = run([str(EXE("headcam-ingest")), "videos", str(media_dir), "--out", str(out), "--size", "32", "--fps", "5",
             "--seg-len", "4", "--clip-len", "4", "--val-every", "4", "--stream-by", "one", "--shard-size", "32",
             "--workers", "2"])
    assert r.returncode == 0, r.stderr
    return out


def corrupt_jpegs(shard: Path, n: int) -> list[str]:
    """Overwrite the bytes of ``n`` JPEG members in place (via the DALI index): the tar stays valid."""
    lines = shard.with_suffix(".idx").read_text().splitlines()[1:]
    data = bytearray(shard.read_bytes())
    hit = []
    for line in lines[:n]:
        parts = line.split()
        for ext, off, size, name in zip(parts[0::4], parts[1::4], parts[2::4], parts[3::4], strict=True):
            if ext == "jpg":
                data[int(off):int(off) + int(size)] = b"\x00" * int(size)
                hit.append(name)
    shard.write_bytes(bytes(data))
    return hit


def test_corrupt_members_are_skipped_and_counted_during_training(media_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(media_data, data)
    assert len(corrupt_jpegs(sorted(data.glob("train-*.tar"))[0], 2)) == 2
    out = tmp_path / "run"
    r = run([str(EXE("headcam-train")), str(ROOT / "configs/demo.yaml"), f"data={data}", f"out={out}", "method=tc",
             "steps=0", "epochs=1", *TINY])
    assert r.returncode == 0, r.stderr
    assert "corrupt 2" in r.stderr
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["data_corrupt"] == 2 and last["loss"] == last["loss"]  # counted, and the loss is finite


def test_sigkill_during_training_then_resume_reaches_the_end(media_data, tmp_path):
    out = tmp_path / "run"
    cmd = [str(EXE("headcam-train")), str(ROOT / "configs/demo.yaml"), f"data={media_data}", f"out={out}",
           "method=simclr", "steps=10", "ckpt_every=2", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HEADCAM_QUIET": "1"})
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(0).uniform(0.0, 1.0))
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed, "training finished before it could be killed"
    step_at_kill = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)["step"]
    assert 2 <= step_at_kill < 10
    (out / "checkpoint.pt.tmp-99999").write_bytes(b"half a checkpoint")  # as if killed mid-write, every time
    r = run(cmd)
    assert r.returncode == 0, r.stderr
    assert torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)["step"] == 10
    assert [p.name for p in out.iterdir() if ".tmp-" in p.name] == []
