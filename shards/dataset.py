"""Opening a dataset directory: ``dataset.json`` + ``manifest.parquet`` + shards.

:class:`Dataset` is the only way later stages learn what a dataset holds (splits, classes,
shard lists and their sample counts); :meth:`Dataset.check` is what ``headcam-ingest inspect``
uses to prove the shards and the manifest agree.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from headcam.shards import schema
from headcam.shards.atomic import atomic_write_bytes


class DatasetError(Exception):
    """The directory is not a (complete) headcam dataset, or lacks what the caller needs."""


def write_table(path: str | Path, table: pa.Table) -> None:
    """Write a Parquet file atomically."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


def manifest_table(rows: list[dict[str, Any]], extra: pa.Schema | None = None) -> pa.Table:
    """Rows -> a manifest table with the contract's column types (plus optional extra columns)."""
    sch = schema.MANIFEST_SCHEMA
    if extra is not None:
        for f in extra:
            sch = sch.append(f)
    return pa.Table.from_pylist(rows, schema=sch)


def failures_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema.FAILURES_SCHEMA)


@dataclass
class Dataset:
    root: Path
    meta: dict[str, Any]
    manifest: pa.Table

    @property
    def kind(self) -> str:
        return self.meta.get("kind", "")

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("classes", {}).get("names", []))

    @property
    def n_classes(self) -> int:
        return int(self.meta.get("classes", {}).get("n_classes", len(self.class_names)))

    @cached_property
    def splits(self) -> list[str]:
        return sorted(set(self.manifest.column("split").to_pylist()))

    @cached_property
    def shard_counts(self) -> dict[str, int]:
        """Samples per shard file name, from the manifest."""
        return dict(Counter(self.manifest.column("shard").to_pylist()))

    def shards(self, split: str) -> list[Path]:
        """Shard paths of one split, in name order."""
        names = sorted({n for n in self.shard_counts if n.startswith(f"{split}-")})
        if not names:
            raise DatasetError(f"{self.root}: no shards for split '{split}' (splits here: {', '.join(self.splits)})")
        return [self.root / n for n in names]

    def count(self, split: str) -> int:
        return sum(c for n, c in self.shard_counts.items() if n.startswith(f"{split}-"))

    def failures(self) -> pa.Table:
        p = self.root / schema.FAILURES
        return pq.read_table(p) if p.exists() else pa.Table.from_pylist([], schema=schema.FAILURES_SCHEMA)

    def check(self) -> list[str]:
        """Problems where shards and manifest disagree (empty list: consistent)."""
        problems = []
        on_disk = {p.name for p in self.root.glob("*.tar")}
        listed = set(self.shard_counts)
        problems += [f"shard in manifest but missing on disk: {n}" for n in sorted(listed - on_disk)]
        problems += [f"shard on disk but not in manifest: {n}" for n in sorted(on_disk - listed)]
        keys_by_shard: dict[str, set[str]] = {}
        for k, s in zip(self.manifest.column("key").to_pylist(), self.manifest.column("shard").to_pylist(),
                        strict=True):
            keys_by_shard.setdefault(s, set()).add(k)
        for name in sorted(listed & on_disk):
            try:
                with tarfile.open(self.root / name) as tar:
                    keys = {m.name.split(".", 1)[0] for m in tar.getmembers() if m.isfile()}
            except (tarfile.TarError, OSError) as e:
                problems.append(f"{name}: unreadable tar ({e})")
                continue
            if keys != keys_by_shard[name]:
                problems.append(f"{name}: {len(keys)} samples in tar, {len(keys_by_shard[name])} in manifest")
            if not (self.root / name).with_suffix(".idx").exists():
                problems.append(f"{name}: missing DALI index {Path(name).with_suffix('.idx')}")
        return problems


def open_dataset(path: str | Path) -> Dataset:
    """Open a finished dataset directory, or raise :class:`DatasetError` saying what is missing."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"dataset directory not found: {root}")
    meta_path, man_path = root / schema.DATASET_JSON, root / schema.MANIFEST
    if not meta_path.exists() or not man_path.exists():
        raise DatasetError(f"{root} is not a finished headcam dataset (no {schema.DATASET_JSON} / {schema.MANIFEST}); "
                           "run or resume headcam-ingest")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("schema_version") != schema.SCHEMA_VERSION:
        raise DatasetError(f"{root}: schema version {meta.get('schema_version')} != {schema.SCHEMA_VERSION}")
    manifest = pq.read_table(man_path)
    if manifest.num_rows == 0:
        raise DatasetError(f"{root}: the dataset is empty (0 samples)")
    return Dataset(root=root, meta=meta, manifest=manifest)
