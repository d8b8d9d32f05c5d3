"""Eval tests run single-threaded: their tensors are tiny, and intra-op threads on a busy machine
(teammates' tests in parallel) made tiny Adam steps ~20x slower through spin-waiting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def clip_data(media_dir, tmp_path_factory) -> Path:
    """A video dataset for clip tests: the three shared videos at 8 fps, 32 px, one class each (a segment per
    file), clips of 16 frames, every 2nd clip held out (2 / 3 / 7 training clips of 16 frames per class, and
    shorter tail clips)."""
    from headcam.ingest.cli import main as ingest

    out = tmp_path_factory.mktemp("clips") / "ds"
    assert ingest(["videos", "--out", str(out), "--size", "32", "--fps", "8", "--seg-len", "100", "--clip-len", "16",
                   "--val-every", "2", "--stream-by", "file", "--workers", "1", "--", str(media_dir)]) == 0
    return out
