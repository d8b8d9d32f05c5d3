"""Shared fixtures: paths to the shared media, and a tiny real-frame dataset in the shard contract."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from media_frames import EDGE, MEDIA, real_frames

os.environ.setdefault("HEADCAM_QUIET", "1")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def media_dir() -> Path:
    assert MEDIA.is_dir(), f"shared media not found at {MEDIA}"
    return MEDIA


@pytest.fixture(scope="session")
def edge_dir() -> Path:
    return EDGE


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A 3-class image dataset (label = source video) with train/val shards, 2 shards per split.

    Built with the shard writer directly from real decoded frames; each frame also carries a
    saliency PNG (a bright blob), so pipelines can test saliency fixations on it.
    """
    import numpy as np
    from PIL import Image

    from headcam.shards.dataset import manifest_table, write_json, write_table
    from headcam.shards.schema import DATASET_JSON, MANIFEST, SCHEMA_VERSION
    from headcam.shards.writer import Sample, ShardWriter

    root = tmp_path_factory.mktemp("tiny_dataset")
    frames = real_frames()
    rows = []
    writers = {s: ShardWriter(root, s, max_count=9) for s in ("train", "val")}
    yy, xx = np.mgrid[0:48, 0:64]
    for i, (vi, arr) in enumerate(frames):
        split = "val" if i % 4 == 3 else "train"
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        sal = np.exp(-((yy - 12 - vi * 8) ** 2 + (xx - 40) ** 2) / 50.0)
        sbuf = io.BytesIO()
        Image.fromarray((255 * sal / sal.max()).astype(np.uint8)).save(sbuf, "PNG")
        key = f"f{i:05d}"
        writers[split].write(Sample(key=key, jpg=buf.getvalue(), label=vi, meta={"i": i, "clip": i // 4},
                                    saliency_png=sbuf.getvalue()))
        rows.append(dict(key=key, split=split, shard="", label=vi, source=f"video{vi}", stream="", video_index=vi,
                         frame_index=i, pts=float("nan"), stream_time=float("nan"), clip=i // 4,
                         width=arr.shape[1], height=arr.shape[0], has_saliency=True))
    shard_of = {}
    for w in writers.values():
        w.close()
        shard_of.update(dict(w.written))
    for r in rows:
        r["shard"] = shard_of[r["key"]]
    write_table(root / MANIFEST, manifest_table(rows))
    write_json(root / DATASET_JSON, {"schema_version": SCHEMA_VERSION, "kind": "images",
                                     "classes": {"names": ["city", "nasa", "tree"], "n_classes": 3}})
    return root
