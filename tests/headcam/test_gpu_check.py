"""scripts/gpu_check.sh refuses at once, with one line, where there is no CUDA device."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would run for real")
def test_gpu_check_refuses_cleanly_without_cuda():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("gpu_check: no CUDA device visible") and "Traceback" not in proc.stderr
    assert not (ROOT / "bench" / "out-gpu").exists()
