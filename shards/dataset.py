"""Opening a dataset: ``dataset.json`` + ``manifest.parquet`` + shards, in a directory or at a URL.

:class:`Dataset` is the only way later stages learn what a dataset holds (splits, classes,
shard lists and their sample counts); :meth:`Dataset.check` is what ``headcam-ingest inspect``
uses to prove the shards and the manifest agree. Where a dataset can live (directory, fsspec URL,
``pipe:`` command) is :mod:`headcam.shards.location`'s business: ``root`` is a :class:`Path` or a
:class:`~headcam.shards.location.RemotePath`, and shard paths are ``root / name`` for both.
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
from headcam.shards.location import LocationError, RemotePath, locate


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
    root: Path | RemotePath
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

    def shards(self, split: str) -> list[Path | RemotePath]:
        """Shard paths (or URLs) of one split, in name order."""
        names = sorted({n for n in self.shard_counts if n.startswith(f"{split}-")})
        if not names:
            raise DatasetError(f"{self.root}: no shards for split '{split}' (splits here: {', '.join(self.splits)})")
        return [self.root / n for n in names]

    def count(self, split: str) -> int:
        return sum(c for n, c in self.shard_counts.items() if n.startswith(f"{split}-"))

    def failures(self) -> pa.Table:
        p = self.root / schema.FAILURES
        if not p.exists():
            return pa.Table.from_pylist([], schema=schema.FAILURES_SCHEMA)
        return pq.read_table(pa.BufferReader(p.read_bytes()))

    def check(self) -> list[str]:
        """Problems where shards and manifest disagree (empty list: consistent); local datasets only."""
        if not isinstance(self.root, Path):
            raise DatasetError(f"{self.root}: checking shards against the manifest needs a local dataset directory")
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


def open_dataset(path: str | Path | RemotePath) -> Dataset:
    """Open a finished dataset (a directory, a URL or a ``pipe:`` command, see :mod:`headcam.shards.location`),
    or raise :class:`DatasetError` saying in one line what is missing or unreadable."""
    try:
        root = locate(path)
        if isinstance(root, Path):
            _check_local(root)
        meta = json.loads((root / schema.DATASET_JSON).read_bytes().decode("utf-8"))
        manifest = pq.read_table(pa.BufferReader((root / schema.MANIFEST).read_bytes()))
    except LocationError as e:
        raise DatasetError(str(e)) from None
    except (json.JSONDecodeError, UnicodeDecodeError, pa.ArrowInvalid) as e:
        raise DatasetError(f"{path}: unreadable {schema.DATASET_JSON} or {schema.MANIFEST} ({e})") from None
    if meta.get("schema_version") != schema.SCHEMA_VERSION:
        raise DatasetError(f"{root}: schema version {meta.get('schema_version')} != {schema.SCHEMA_VERSION}")
    if manifest.num_rows == 0:
        raise DatasetError(f"{root}: the dataset is empty (0 samples)")
    return Dataset(root=root, meta=meta, manifest=manifest)


def _check_local(root: Path) -> None:
    if not root.is_dir():
        raise DatasetError(f"dataset directory not found: {root}")
    if not (root / schema.DATASET_JSON).exists() or not (root / schema.MANIFEST).exists():
        raise DatasetError(f"{root} is not a finished headcam dataset (no {schema.DATASET_JSON} / {schema.MANIFEST}); "
                           "run or resume headcam-ingest")
