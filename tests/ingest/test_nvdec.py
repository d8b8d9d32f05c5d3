"""``--decoder nvdec``: a usage error without CUDA; on a GPU, PyAV's frames within JPEG noise."""

from __future__ import annotations

import io
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from headcam.ingest.cli import main

ARGS = ["--size", "64", "--fps", "5", "--stream-by", "file", "--workers", "1", "--shard-size", "1000"]


def ingest(inputs: list[Path], out: Path, *extra: str) -> int:
    return main(["videos", "--out", str(out), *ARGS, *extra, "--", *map(str, inputs)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_nvdec_without_cuda_is_a_one_line_usage_error(media_dir, tmp_path, capsys):
    assert ingest([media_dir], tmp_path / "ds", "--decoder", "nvdec") == 2
    err = capsys.readouterr().err.strip()
    assert "--decoder nvdec needs a CUDA GPU" in err and "\n" not in err
    assert not (tmp_path / "ds" / "dataset.json").exists()


def _frames(out: Path) -> dict[tuple[str, int], np.ndarray]:
    """(source, sampled frame index) -> decoded stored JPEG, read back from the shards."""
    rows = {r["key"]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    got = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                if ext == "jpg":
                    r = rows[key]
                    got[r["source"], r["frame_index"]] = np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())))
    return got


@pytest.mark.gpu
@pytest.mark.parametrize("which", ["media", "edge"])
def test_nvdec_matches_pyav(which, media_dir, edge_dir, tmp_path):
    """Same samples (count per source within 1, as the sampling rule is PyAV's), same frame for
    each (mean absolute difference of the stored JPEGs at JPEG-noise level)."""
    inputs = [media_dir] if which == "media" else sorted(p for p in edge_dir.iterdir() if p.is_file())
    assert ingest(inputs, tmp_path / "cpu") in (0, 3)
    assert ingest(inputs, tmp_path / "gpu", "--decoder", "nvdec") in (0, 3)
    cpu, gpu = _frames(tmp_path / "cpu"), _frames(tmp_path / "gpu")
    per_source = defaultdict(lambda: [0, 0])
    for src, _ in cpu:
        per_source[src][0] += 1
    for src, _ in gpu:
        per_source[src][1] += 1
    for src, (a, b) in per_source.items():
        if a and b:  # a file only one decoder can read is a failure row, not a mismatch
            assert abs(a - b) <= 1, (src, a, b)
    common = sorted(cpu.keys() & gpu.keys())
    assert common
    for k in common:
        assert cpu[k].shape == gpu[k].shape, k
        mad = np.abs(cpu[k].astype(np.int16) - gpu[k].astype(np.int16)).mean()
        assert mad < 4.0, (k, mad)  # a different frame differs by far more on moving footage
