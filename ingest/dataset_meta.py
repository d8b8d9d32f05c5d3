"""``dataset.json``: what a dataset is and how it was made, written last (it marks completion).

Holds the schema version, kind, every ingest parameter, the classes, counts per split, the
sources (with size and mtime, so a stale dataset can be spotted) and the tool versions.
"""

from __future__ import annotations

import os
import platform
import sys
from collections import Counter
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from headcam.shards import schema
from headcam.shards.dataset import write_json

_TOOLS = ("headcam", "av", "decord", "numpy", "opencv-python-headless", "pillow", "pyarrow", "webdataset", "torch")


def tool_versions() -> dict[str, str]:
    """Versions of Python and of the libraries whose behaviour shapes the output bytes."""
    out = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def source_entry(path: str | Path, **extra: Any) -> dict[str, Any]:
    """A source record: path, size in bytes and mtime (seconds), plus any extra fields."""
    st = os.stat(path)
    return {"path": str(path), "size": st.st_size, "mtime": st.st_mtime, **extra}


def split_counts(splits: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(splits).items()))


def build_dataset_json(kind: str, params: dict[str, Any], classes: dict[str, Any], counts: dict[str, int],
                       shards: dict[str, int], sources: list[dict[str, Any]],
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``dataset.json`` document.

    ``classes`` must hold ``n_classes`` and may hold ``names`` (image datasets) or per-stream ranges
    (video datasets); ``counts`` is samples per split, ``shards`` shard files per split.
    """
    if kind not in ("video", "images"):
        raise ValueError(f"kind must be 'video' or 'images', got {kind!r}")
    if "n_classes" not in classes:
        raise ValueError("classes must give n_classes")
    doc = {
        "schema_version": schema.SCHEMA_VERSION,
        "kind": kind,
        "params": params,
        "classes": classes,
        "counts": counts,
        "shards": shards,
        "n_samples": sum(counts.values()),
        "sources": sources,
        "tools": tool_versions(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    doc.update(extra or {})
    return doc


def write_dataset_json(out_dir: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``dataset.json`` atomically; call it last: its presence means the dataset is complete."""
    path = Path(out_dir) / schema.DATASET_JSON
    write_json(path, doc)
    return path
