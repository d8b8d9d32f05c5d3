"""Fixtures for trainer tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from headcam.shards.dataset import write_json, write_table


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """One intra-op thread: tiny models gain nothing from more, and on a loaded 2-core machine OpenMP's
    spinning threads made steps up to 10x slower. Subprocesses get OMP_NUM_THREADS=1 likewise."""
    import os

    import torch

    before, env_before = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(before)
    if env_before is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = env_before


@pytest.fixture
def copy_dataset(tiny_dataset, tmp_path):
    """A writable copy of tiny_dataset whose manifest / dataset.json a test may change."""
    def make(manifest_fn=None, meta_fn=None) -> Path:
        dst = tmp_path / "ds_copy"
        shutil.copytree(tiny_dataset, dst)
        if manifest_fn is not None:
            write_table(dst / "manifest.parquet", manifest_fn(pq.read_table(dst / "manifest.parquet")))
        if meta_fn is not None:
            meta = json.loads((dst / "dataset.json").read_text())
            write_json(dst / "dataset.json", meta_fn(meta))
        return dst
    return make


@pytest.fixture(scope="session")
def media_dataset(media_dir, tmp_path_factory) -> Path:
    """The shared media clips through the real ``headcam-ingest videos``: 48 px frames at 2 fps,
    5 s segments (11 classes over one stream), 4-frame clips, ~10 shards of about 12 samples."""
    from headcam.ingest.cli import main as ingest

    out = tmp_path_factory.mktemp("media") / "ds"
    code = ingest(["videos", str(media_dir), "--out", str(out), "--fps", "2", "--size", "48", "--seg-len", "5",
                   "--clip-len", "4", "--shard-size", "12", "--workers", "1", "--stream-by", "one"])
    assert code == 0
    return out
