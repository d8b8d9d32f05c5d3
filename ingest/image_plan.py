"""Phase 2 of an image ingest: staged units -> shards of each split, and the manifest.

The reader's task order is already the write order (each split in a seeded random order, so
shards mix classes), so the plan only cuts each split's staged samples, in unit order, into
shards ``<split>-NNNNNN.tar`` of ``shard_size`` samples, or into ``shards`` shards of near-equal
size (counted after decoding, so failed images never leave a shard short). The plan needs only
the sample counts in the unit journal; unit indexes are read one shard at a time. Staged image
samples are finished shard members already, so a shard is a few byte-range copies.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from headcam.ingest.engine import ShardJob
from headcam.ingest.staged import StagedRun, load_unit_index
from headcam.shards import schema


@dataclass(frozen=True)
class PlannedShard:
    split: str
    name: str
    parts: tuple[tuple[str, int, int], ...]  # (unit key, first sample, end), in order

    @property
    def n_samples(self) -> int:
        return sum(stop - start for _, start, stop in self.parts)


def shard_sizes(n: int, shard_size: int | None, shards: int | None) -> list[int]:
    """Samples per shard for a split of ``n``: ``shard_size`` each (the last one shorter), or
    ``shards`` near-equal ones (the first ``n % shards`` one larger; fewer when ``n < shards``)."""
    if shards is not None:
        base, extra = divmod(n, shards)
        return [base + (i < extra) for i in range(min(shards, n))]
    return [min(shard_size, n - start) for start in range(0, n, shard_size)]


def plan_shards(units: list[dict[str, Any]], shard_size: int | None, shards: int | None) -> list[PlannedShard]:
    """Cut the staged samples of each split (units in task order) into shards."""
    by_split: dict[str, list[tuple[str, int]]] = {}
    for u in units:
        if u["n_samples"]:
            by_split.setdefault(u["split"], []).append((u["key"], u["n_samples"]))
    planned = []
    for split, split_units in by_split.items():
        pending = iter(split_units)
        key, n_left, start = None, 0, 0
        for index, size in enumerate(shard_sizes(sum(n for _, n in split_units), shard_size, shards)):
            parts = []
            while size:
                if not n_left:
                    key, n_left = next(pending)
                    start = 0
                take = min(size, n_left)
                parts.append((key, start, start + take))
                start, n_left, size = start + take, n_left - take, size - take
            planned.append(PlannedShard(split, schema.shard_name(split, index), tuple(parts)))
    return planned


def plan_id(planned: list[PlannedShard]) -> str:
    """Fingerprint of the sample assignment (the unit files are fixed by the staged parameters)."""
    text = "".join(f"{s.name} {k} {a} {b}\n" for s in planned for k, a, b in s.parts)
    return hashlib.sha1(text.encode()).hexdigest()


class ShardFiller:
    """Shard jobs for the engine, and the manifest rows of every shard as a by-product.

    The engine consumes :meth:`jobs` once, in order, skipping shards already written; the rows of
    every shard, written now or before, are kept as one small Arrow table each.
    """

    def __init__(self, staging_dir: Path, planned: list[PlannedShard], extra_schema: pa.Schema | None):
        self.staging_dir, self.planned = staging_dir, planned
        self.schema = schema.MANIFEST_SCHEMA
        for f in extra_schema or []:  # the reader's extra columns, after the contract's own
            self.schema = self.schema.append(f)
        self.tables: list[pa.Table] = []
        self._units: dict[str, list[dict[str, Any]]] = {}

    def _samples(self, key: str) -> list[dict[str, Any]]:
        if key not in self._units:
            self._units = {key: load_unit_index(self.staging_dir, key)["samples"]}  # one unit at a time
        return self._units[key]

    def jobs(self) -> Iterator[ShardJob]:
        for shard in self.planned:
            runs, samples = [], []
            for key, start, stop in shard.parts:
                part = self._samples(key)[start:stop]
                first, (last, last_size) = part[0]["block"][0], part[-1]["block"]
                runs.append(StagedRun(str(self.staging_dir / f"{key}.tar"), first, last + last_size - first,
                                      [(s["key"], s["block"][0] - first, s["block"][1], s["members"]) for s in part]))
                samples += part
            self.tables.append(self._rows(samples, shard.name))
            yield ShardJob(shard.name, runs)

    def _rows(self, samples: list[dict[str, Any]], shard: str) -> pa.Table:
        """The manifest rows of a shard's staged samples, built column by column (the parent's share
        of an image ingest's work, so kept lean)."""
        n = len(samples)
        columns: dict[str, list] = {
            "key": [s["key"] for s in samples], "split": [s["split"] for s in samples], "shard": [shard] * n,
            "label": [s["label"] for s in samples], "source": [s["source"] for s in samples], "stream": [""] * n,
            "video_index": [-1] * n, "frame_index": [s["frame_index"] for s in samples],
            "pts": [math.nan if s["pts"] is None else s["pts"] for s in samples], "stream_time": [math.nan] * n,
            "clip": [-1] * n, "width": [s["w"] for s in samples], "height": [s["h"] for s in samples],
            "has_saliency": [s["has_saliency"] for s in samples]}
        for name in self.schema.names[len(schema.MANIFEST_SCHEMA):]:
            columns[name] = [s["extra"].get(name) for s in samples]  # None until the reader fills it (split_iid)
        return pa.Table.from_pydict(columns, schema=self.schema)

    def manifest(self) -> pa.Table:
        return pa.concat_tables(self.tables)
